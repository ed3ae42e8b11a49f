//! Standard output for Meridian's command-line tools, safe when the reader goes away.

use std::io::Write;

/// Writes to standard output. When the reader has gone (`meridian ... | head`), the command
/// exits at once, quietly and successfully, as Unix tools do, instead of panicking on the
/// broken pipe; any other write failure exits with 74 (`EX_IOERR`).
pub fn write(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("cannot write to standard output: {e}");
        std::process::exit(74);
    }
}

/// `print!` that survives a closed pipe (see [`write`](crate::stdout::write)).
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => { $crate::stdout::write(format_args!($($arg)*)) };
}

/// `println!` that survives a closed pipe (see [`write`](crate::stdout::write)).
#[macro_export]
macro_rules! outln {
    () => { $crate::stdout::write(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::stdout::write(format_args!("{}\n", format_args!($($arg)*))) };
}
