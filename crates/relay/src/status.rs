//! What [`Relay::status`](crate::Relay::status) reports: the flows, their bytes and idle times, and the armed faults.
//!
//! Field names are stable: the control interface sends this as one JSON line.

use std::net::SocketAddr;

use serde::Serialize;

use crate::Fault;

/// A snapshot of the relay.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Status {
    /// Where clients connect.
    pub listen: SocketAddr,
    /// Where flows are relayed to, as configured (it is resolved for every new flow).
    pub upstream: String,
    /// How many flows are open now (`flows.len()`).
    pub flow_count: usize,
    /// Connections accepted since the relay started, refused ones included.
    pub accepted_total: u64,
    /// Connections reset at once because [`Fault::RefuseNew`] was armed.
    pub refused_total: u64,
    /// The armed faults, in their text form when serialized (`"latency 50ms"`).
    pub faults: Vec<Fault>,
    /// The open flows, oldest first.
    pub flows: Vec<FlowStatus>,
}

/// One client connection through the relay.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct FlowStatus {
    /// A number unique for the relay's lifetime, also used in its log events.
    pub id: u64,
    /// The client's address.
    pub client: SocketAddr,
    /// What the relay is doing with the flow.
    pub state: FlowState,
    /// Bytes forwarded from the client to the server.
    pub bytes_to_server: u64,
    /// Bytes forwarded from the server to the client.
    pub bytes_to_client: u64,
    /// Bytes read and thrown away because the flow is blackholed.
    pub bytes_swallowed: u64,
    /// Milliseconds since a byte last moved either way (the idle time the idle faults
    /// measure).
    pub idle_ms: u64,
    /// Milliseconds since the flow was accepted.
    pub age_ms: u64,
}

/// What the relay is doing with a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FlowState {
    /// Bytes are forwarded both ways.
    Forwarding,
    /// Nothing is forwarded and nothing is closed ([`Fault::BlackholeIdle`] or
    /// [`Fault::BlackholeNew`]).
    Blackholed,
    /// The flow is being closed (after the 4031 packet, waiting for the client to go).
    Closing,
}

impl FlowState {
    pub(crate) fn to_u8(self) -> u8 {
        match self {
            FlowState::Forwarding => 0,
            FlowState::Blackholed => 1,
            FlowState::Closing => 2,
        }
    }

    pub(crate) fn from_u8(value: u8) -> FlowState {
        match value {
            0 => FlowState::Forwarding,
            1 => FlowState::Blackholed,
            _ => FlowState::Closing,
        }
    }
}
