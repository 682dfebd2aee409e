//! Finding the MariaDB server binaries on this machine.

use std::path::{Path, PathBuf};

use crate::HarnessError;

/// The paths of the server binaries the harness runs.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// The server itself.
    pub mariadbd: PathBuf,
    /// The script that creates a fresh data directory.
    pub install_db: PathBuf,
}

impl Binaries {
    /// Finds `mariadbd` and `mariadb-install-db` (or their `mysqld`-era names).
    pub fn locate() -> Result<Binaries, HarnessError> {
        let mariadbd = find("GONEAWAY_MARIADBD", &["mariadbd", "mysqld"]).ok_or(
            HarnessError::MariadbNotFound {
                binary: "mariadbd",
                env_var: "GONEAWAY_MARIADBD",
            },
        )?;
        let install_db = find(
            "GONEAWAY_MARIADB_INSTALL_DB",
            &["mariadb-install-db", "mysql_install_db"],
        )
        .ok_or(HarnessError::MariadbNotFound {
            binary: "mariadb-install-db",
            env_var: "GONEAWAY_MARIADB_INSTALL_DB",
        })?;
        Ok(Binaries {
            mariadbd,
            install_db,
        })
    }
}

/// A command on `PATH` (or in the sbin directories), such as `rsync`.
pub(crate) fn find_command(name: &str) -> Option<PathBuf> {
    search_dirs()
        .into_iter()
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn search_dirs() -> Vec<PathBuf> {
    // sbin is often missing from a non-root PATH, and Debian puts mariadbd there.
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/usr/local/sbin", "/usr/bin"].map(PathBuf::from));
    dirs
}

fn find(env_var: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env_var) {
        let path = PathBuf::from(path);
        return is_executable(&path).then_some(path);
    }
    let dirs = search_dirs();
    names
        .iter()
        .flat_map(|name| dirs.iter().map(move |dir| dir.join(name)))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}
