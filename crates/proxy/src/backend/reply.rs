//! Following a reply packet by packet: where it ends, and what it says about the session.

use crate::net::packet::{self, status};
use crate::net::{ErrInfo, Packet, StateChange};

/// The shape of reply a command gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// `COM_QUERY`: OK, ERR, a `LOCAL INFILE` request, or result sets (text rows), possibly
    /// several in a row.
    Query,
    /// `COM_STMT_EXECUTE`: like a query, with binary rows (a prepared `LOAD DATA LOCAL`
    /// asks for the file as a query does).
    Execute,
    /// `COM_STMT_PREPARE`: ERR, or OK then parameter and column definitions.
    Prepare,
    /// `COM_STMT_FETCH`: rows until EOF or ERR.
    Fetch,
    /// `COM_FIELD_LIST`: column definitions until EOF or ERR.
    FieldList,
    /// Exactly one packet (`COM_PING`, `COM_INIT_DB`, `COM_STATISTICS`…).
    Single,
    /// No reply at all (`COM_STMT_CLOSE`, `COM_STMT_SEND_LONG_DATA`).
    Nothing,
}

impl Expect {
    /// The reply shape of a command byte.
    pub fn of(command: u8) -> Expect {
        use crate::net::packet::com;
        match command {
            com::QUERY => Expect::Query,
            com::STMT_EXECUTE => Expect::Execute,
            com::STMT_PREPARE => Expect::Prepare,
            com::STMT_FETCH => Expect::Fetch,
            com::FIELD_LIST => Expect::FieldList,
            com::STMT_CLOSE | com::STMT_SEND_LONG_DATA | com::QUIT => Expect::Nothing,
            _ => Expect::Single,
        }
    }
}

/// What the next packet is expected to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    First,
    Params { left: u16, columns: u16 },
    ParamsEof { columns: u16 },
    Columns { left: u64, then_rows: bool },
    ColumnsEof { then_rows: bool },
    Rows,
    FieldList,
    Done,
}

/// Where a reply stands after a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// More packets follow.
    More,
    /// The reply is complete.
    Done,
    /// The server asked for a local file: the client's packets must be relayed until an
    /// empty one, then the reply goes on.
    LocalInfile,
}

/// Follows one reply. Feed it every physical packet of the reply, in order.
#[derive(Debug)]
pub struct ReplyTracker {
    expect: Expect,
    /// A `COM_STMT_EXECUTE` that asked for a cursor: its reply may stop after the column
    /// definitions (rows come with `COM_STMT_FETCH`).
    cursor: bool,
    deprecate_eof: bool,
    session_track: bool,
    state: State,
    /// The previous physical packet was 16 MiB - 1 long: this one continues it.
    continuing: bool,
    /// Status flags of the last OK or EOF seen.
    pub status: Option<u16>,
    /// Session-state changes reported in the reply's OK packets.
    pub changes: Vec<StateChange>,
    /// The ERR that ended the reply, if one did.
    pub err: Option<ErrInfo>,
    /// For `COM_STMT_PREPARE`: the server's statement id and parameter count.
    pub prepared: Option<(u32, u16)>,
    /// Packets seen so far.
    pub packets: usize,
    /// Whether the packet just fed was an OK packet (whose session-state data a client
    /// without `CLIENT_SESSION_TRACK` must not see).
    pub ok_packet: bool,
    /// Warnings the last OK or EOF reported (`SHOW WARNINGS` reads them on the same
    /// connection).
    pub warnings: u16,
    /// The auto-increment id an OK reported, if any (0: none).
    pub last_insert_id: u64,
}

impl ReplyTracker {
    /// A tracker for a reply of this shape on a connection with these capabilities.
    pub fn new(expect: Expect, capabilities: u32) -> ReplyTracker {
        use crate::net::packet::caps;
        ReplyTracker {
            expect,
            cursor: false,
            deprecate_eof: capabilities & caps::DEPRECATE_EOF != 0,
            session_track: capabilities & caps::SESSION_TRACK != 0,
            state: match expect {
                Expect::Fetch => State::Rows,
                Expect::FieldList => State::FieldList,
                Expect::Nothing => State::Done,
                _ => State::First,
            },
            continuing: false,
            status: None,
            changes: Vec::new(),
            err: None,
            prepared: None,
            packets: 0,
            ok_packet: false,
            warnings: 0,
            last_insert_id: 0,
        }
    }

    /// Whether the reply is complete.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Call after relaying a `LOCAL INFILE` upload: the server's OK or ERR comes next.
    pub fn infile_sent(&mut self) {
        self.state = State::First;
    }

    /// For a `COM_STMT_EXECUTE` whose flags ask for a cursor. Only such a reply can end
    /// at the column definitions: the server also sets `SERVER_STATUS_CURSOR_EXISTS` in
    /// result sets of a `CALL` whose procedure has a cursor open, and those rows follow.
    pub fn with_cursor(mut self, requested: bool) -> ReplyTracker {
        self.cursor = requested && self.expect == Expect::Execute;
        self
    }

    fn ok(&mut self, payload: &[u8]) {
        self.ok_packet = true;
        if let Some(info) = packet::parse_ok(payload, self.session_track) {
            self.status = Some(info.status);
            self.warnings = info.warnings;
            if info.last_insert_id != 0 {
                self.last_insert_id = info.last_insert_id;
            }
            self.changes.extend(info.changes);
        }
    }

    fn after_result(&mut self) -> Step {
        let more = self
            .status
            .is_some_and(|s| s & status::MORE_RESULTS_EXISTS != 0);
        self.state = if more { State::First } else { State::Done };
        if more {
            Step::More
        } else {
            Step::Done
        }
    }

    fn terminator(&mut self, payload: &[u8]) {
        self.ok_packet = self.deprecate_eof;
        // An EOF: 0xfe, warnings, status; an OK in its place: warnings after the ids.
        self.warnings = if self.deprecate_eof {
            packet::parse_ok(payload, false).map_or(0, |i| i.warnings)
        } else {
            payload
                .get(1..3)
                .map_or(0, |w| u16::from_le_bytes([w[0], w[1]]))
        };
        if let Some(info) =
            packet::terminator_status(payload, self.deprecate_eof, self.session_track)
        {
            self.status = Some(info.status);
            self.changes.extend(info.changes);
        }
    }

    /// Takes the next physical packet of the reply.
    pub fn feed(&mut self, p: &Packet) -> Step {
        self.packets += 1;
        self.ok_packet = false;
        let continuation = self.continuing;
        self.continuing = p.continues();
        if continuation {
            // The tail of a row of 16 MiB or more: nothing to interpret.
            return Step::More;
        }
        let payload = &p.payload[..];
        let first = payload.first().copied().unwrap_or(0);
        match self.state {
            State::Done => Step::Done,
            State::First => {
                if first == 0xff {
                    self.err = packet::parse_err(payload);
                    self.state = State::Done;
                    return Step::Done;
                }
                match self.expect {
                    Expect::Single => {
                        if first == 0x00 {
                            self.ok(payload);
                        } else if first == 0xfe {
                            self.status = packet::parse_eof_status(payload);
                        }
                        self.state = State::Done;
                        Step::Done
                    }
                    Expect::Prepare => {
                        let mut r = packet::Reader::new(payload);
                        r.u8();
                        let id = r.u32().unwrap_or(0);
                        let columns = r.u16().unwrap_or(0);
                        let params = r.u16().unwrap_or(0);
                        self.prepared = Some((id, params));
                        self.state = State::Params {
                            left: params,
                            columns,
                        };
                        self.prepare_next()
                    }
                    _ => {
                        if first == 0x00 {
                            self.ok(payload);
                            return self.after_result();
                        }
                        // A prepared LOAD DATA LOCAL asks for the file too.
                        if first == 0xfb && matches!(self.expect, Expect::Query | Expect::Execute) {
                            return Step::LocalInfile;
                        }
                        let n = packet::Reader::new(payload).lenenc().unwrap_or(0);
                        self.columns(n, true)
                    }
                }
            }
            State::Params { left, columns } => {
                self.state = State::Params {
                    left: left.saturating_sub(1),
                    columns,
                };
                self.prepare_next()
            }
            State::ParamsEof { columns } => self.columns(columns.into(), false),
            State::Columns { left, then_rows } => {
                let left = left.saturating_sub(1);
                if left > 0 {
                    self.state = State::Columns { left, then_rows };
                    return Step::More;
                }
                if !self.deprecate_eof {
                    self.state = State::ColumnsEof { then_rows };
                    return Step::More;
                }
                if then_rows {
                    self.state = State::Rows;
                    Step::More
                } else {
                    self.state = State::Done;
                    Step::Done
                }
            }
            State::ColumnsEof { then_rows } => {
                self.terminator(payload);
                let cursor =
                    self.cursor && self.status.is_some_and(|s| s & status::CURSOR_EXISTS != 0);
                if then_rows && !cursor {
                    self.state = State::Rows;
                    Step::More
                } else {
                    self.state = State::Done;
                    Step::Done
                }
            }
            State::Rows => {
                if first == 0xff {
                    self.err = packet::parse_err(payload);
                    self.state = State::Done;
                    return Step::Done;
                }
                if packet::is_terminator(payload) {
                    self.terminator(payload);
                    if self.expect == Expect::Fetch {
                        self.state = State::Done;
                        return Step::Done;
                    }
                    return self.after_result();
                }
                Step::More
            }
            State::FieldList => {
                if first == 0xff {
                    self.err = packet::parse_err(payload);
                    self.state = State::Done;
                    return Step::Done;
                }
                if packet::is_terminator(payload) {
                    self.terminator(payload);
                    self.state = State::Done;
                    return Step::Done;
                }
                Step::More
            }
        }
    }

    /// After the prepare OK or a parameter definition: what comes next.
    fn prepare_next(&mut self) -> Step {
        let State::Params { left, columns } = self.state else {
            return Step::More;
        };
        if left > 0 {
            return Step::More;
        }
        let had_params = self.prepared.is_some_and(|(_, p)| p > 0);
        if had_params && !self.deprecate_eof {
            self.state = State::ParamsEof { columns };
            return Step::More;
        }
        self.columns(columns.into(), false)
    }

    /// `n` column definitions come next (then rows, if `then_rows`); none ends the reply.
    fn columns(&mut self, n: u64, then_rows: bool) -> Step {
        if n == 0 {
            self.state = State::Done;
            return Step::Done;
        }
        self.state = State::Columns { left: n, then_rows };
        Step::More
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::packet::caps;
    use bytes::Bytes;

    fn p(bytes: &[u8]) -> Packet {
        Packet::new(1, Bytes::copy_from_slice(bytes))
    }

    #[test]
    fn result_set_with_eof_then_more_results() {
        let mut t = ReplyTracker::new(Expect::Query, caps::PROTOCOL_41);
        assert_eq!(t.feed(&p(&[1])), Step::More); // one column
        assert_eq!(t.feed(&p(b"\x03defcolumn")), Step::More);
        assert_eq!(t.feed(&p(&[0xfe, 0, 0, 0x0a, 0])), Step::More); // EOF, more results
        assert_eq!(t.feed(&p(b"\x011")), Step::More); // row
        assert_eq!(t.feed(&p(&[0xfe, 0, 0, 0x0a, 0])), Step::More); // EOF, more results
        assert_eq!(t.feed(&p(&[0, 0, 0, 2, 0, 0, 0])), Step::Done); // final OK
        assert_eq!(t.status, Some(2));
    }

    #[test]
    fn a_procedure_cursor_flag_does_not_end_a_text_result() {
        // CALL of a procedure with a cursor open: CURSOR_EXISTS (0x40) on every EOF, the
        // rows follow all the same, then the procedure's error.
        let mut t = ReplyTracker::new(Expect::Query, caps::PROTOCOL_41);
        assert_eq!(t.feed(&p(&[1])), Step::More);
        assert_eq!(t.feed(&p(b"\x03defcolumn")), Step::More);
        assert_eq!(t.feed(&p(&[0xfe, 0, 0, 0xea, 0])), Step::More);
        assert_eq!(t.feed(&p(b"\x010")), Step::More);
        assert_eq!(t.feed(&p(&[0xfe, 0, 0, 0xea, 0])), Step::More);
        assert_eq!(
            t.feed(&p(b"\xff\x2e\x05#24000Cursor is not open")),
            Step::Done
        );
        assert_eq!(t.err.map(|e| e.code), Some(1326));
        // A COM_STMT_EXECUTE that asked for a cursor ends at the column definitions.
        let mut t = ReplyTracker::new(Expect::Execute, caps::PROTOCOL_41).with_cursor(true);
        assert_eq!(t.feed(&p(&[1])), Step::More);
        assert_eq!(t.feed(&p(b"\x03defcolumn")), Step::More);
        assert_eq!(t.feed(&p(&[0xfe, 0, 0, 0x42, 0])), Step::Done);
    }

    #[test]
    fn prepare_with_deprecate_eof() {
        let mut t = ReplyTracker::new(Expect::Prepare, caps::PROTOCOL_41 | caps::DEPRECATE_EOF);
        assert_eq!(
            t.feed(&p(&[0, 9, 0, 0, 0, 1, 0, 2, 0, 0, 0, 0])),
            Step::More
        );
        assert_eq!(t.feed(&p(b"param1")), Step::More);
        assert_eq!(t.feed(&p(b"param2")), Step::More);
        assert_eq!(t.feed(&p(b"column")), Step::Done);
        assert_eq!(t.prepared, Some((9, 2)));
    }
}
