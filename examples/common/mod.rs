//! What the command-line examples share.

use std::process::ExitCode;

/// An example's exit status: an error becomes `error: MESSAGE` on stderr and a failing code.
pub fn exit_code(result: wgquant::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
