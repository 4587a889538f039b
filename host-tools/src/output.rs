//! Finishing output files that were written under a temporary name.

use std::io;
use std::path::Path;

/// Gives a finished file the usual `rw-r--r--` permissions: temporary files are created
/// owner-only, and a pack or checkpoint is meant to be copied and shared.
pub fn make_readable(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(())
    }
}
