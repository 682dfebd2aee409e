//! Names the git commit the binary is built from, for `goneaway --version`.
//!
//! Sets `GONEAWAY_GIT_REV` to the short commit hash, with `-dirty` when tracked files differ
//! from it, or to the empty string when the crate is not built from a git checkout (a crates
//! tarball, a vendored copy): `--version` then prints the version alone. A packager building
//! outside git may set `GONEAWAY_GIT_REV` in the build's environment.
//!
//! Cargo reruns this when HEAD moves (a commit, a checkout) or the index changes (`git add`,
//! a commit). An edit to a tracked file alone does not rerun it — watching the whole tree
//! would rebuild the binary on every edit anywhere — so `-dirty` says what the tree was
//! the last time HEAD or the index changed.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=GONEAWAY_GIT_REV");
    let rev = match std::env::var("GONEAWAY_GIT_REV") {
        Ok(rev) => rev,
        Err(_) => git_rev(&manifest_dir).unwrap_or_default(),
    };
    println!("cargo:rustc-env=GONEAWAY_GIT_REV={rev}");
}

/// The short hash of HEAD (`-dirty` if tracked files changed), when `dir` is tracked by git.
fn git_rev(dir: &Path) -> Option<String> {
    // Inside some other repository (a tarball unpacked in a home directory under git) the
    // crate's own files are not tracked: that repository's commit would be a lie.
    git(dir, &["ls-files", "--error-unmatch", "Cargo.toml"])?;
    for path in ["HEAD", "index", "packed-refs"] {
        watch(dir, path);
    }
    if let Some(reference) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        watch(dir, &reference);
    }
    let hash = git(dir, &["rev-parse", "--short=10", "HEAD"])?;
    // `status` refreshes stale stat data (which `diff-index` alone would trust); without
    // optional locks it does so in memory and never writes the index from a build.
    let dirty = git(
        dir,
        &[
            "status",
            "--porcelain",
            "--untracked-files=no",
            "--ignore-submodules",
        ],
    )
    .is_some_and(|out| !out.is_empty());
    Some(if dirty { format!("{hash}-dirty") } else { hash })
}

/// Reruns the build script when the git file `path` (as `git rev-parse --git-path` resolves
/// it, so worktrees work too) changes.
fn watch(dir: &Path, path: &str) {
    if let Some(file) = git(
        dir,
        &["rev-parse", "--path-format=absolute", "--git-path", path],
    ) {
        // Cargo reruns the script on every build for a path that does not exist
        // (`packed-refs` often does not).
        if Path::new(&file).exists() {
            println!("cargo:rerun-if-changed={file}");
        }
    }
}

/// `git ARGS` in `dir`: its trimmed standard output when it succeeds.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .env("GIT_OPTIONAL_LOCKS", "0")
        .arg("-C")
        .arg(dir)
        .args(args)
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}
