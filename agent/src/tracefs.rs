//! Tracepoint field offsets, read from tracefs at start-up.
//!
//! The offsets of syscall tracepoint fields are not ABI: kernels with a lazy-preempt common header
//! shift every field. The capture programs read their arguments at `ENTER_ARGS_OFFSET + 8 * i` and
//! the return value at `EXIT_RET_OFFSET`; this module proves from the format files that this layout
//! holds for every tracepoint we attach, and refuses to start otherwise.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum TracefsError {
    #[error("cannot read {path}: {source} (is tracefs mounted at /sys/kernel/tracing?)")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{tracepoint}: field `{field}` missing from the format file")]
    MissingField { tracepoint: String, field: String },
    #[error(
        "{tracepoint}: argument {index} is at offset {found}, expected {expected} (8-byte slots)"
    )]
    Layout {
        tracepoint: String,
        index: usize,
        found: u64,
        expected: u64,
    },
    #[error("{tracepoint}: exit `ret` at offset {found}, other tracepoints use {expected}")]
    RetMismatch {
        tracepoint: String,
        found: u64,
        expected: u64,
    },
}

/// The attach list: (syscall, argument names in order). Shared with the loader.
pub const SYSCALLS: &[(&str, &[&str])] = &[
    ("read", &["fd", "buf", "count"]),
    ("write", &["fd", "buf", "count"]),
    ("readv", &["fd", "vec", "vlen"]),
    ("writev", &["fd", "vec", "vlen"]),
    ("recvfrom", &["fd", "ubuf", "size"]),
    ("sendto", &["fd", "buff", "len"]),
    ("recvmsg", &["fd", "msg"]),
    ("sendmsg", &["fd", "msg"]),
    ("accept", &["fd", "upeer_sockaddr"]),
    ("accept4", &["fd", "upeer_sockaddr"]),
    ("connect", &["fd", "uservaddr"]),
];

/// Offsets the programs need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offsets {
    pub enter_args: u64,
    pub exit_ret: u64,
}

/// Extracts `offset` of `field` from the text of a tracepoint `format` file.
pub fn field_offset(format: &str, field: &str) -> Option<u64> {
    format.lines().find_map(|line| {
        let line = line.trim();
        let decl = line.strip_prefix("field:")?.split(';').next()?;
        // The declaration ends with the field name, possibly as `name[N]`.
        let name = decl.rsplit([' ', '*']).next()?.split('[').next()?;
        if name != field {
            return None;
        }
        line.split(';')
            .find_map(|part| part.trim().strip_prefix("offset:"))
            .and_then(|v| v.trim().parse().ok())
    })
}

/// Checks that arguments sit in consecutive 8-byte slots from the first one, and returns it.
pub fn enter_layout(tracepoint: &str, format: &str, args: &[&str]) -> Result<u64, TracefsError> {
    let mut base = None;
    for (index, name) in args.iter().enumerate() {
        let found = field_offset(format, name).ok_or_else(|| TracefsError::MissingField {
            tracepoint: tracepoint.to_string(),
            field: (*name).to_string(),
        })?;
        let first = *base.get_or_insert(found);
        let expected = first + 8 * index as u64;
        if found != expected {
            return Err(TracefsError::Layout {
                tracepoint: tracepoint.to_string(),
                index,
                found,
                expected,
            });
        }
    }
    Ok(base.unwrap_or(0))
}

fn read_format(root: &Path, tracepoint: &str) -> Result<String, TracefsError> {
    let path = root.join("events/syscalls").join(tracepoint).join("format");
    std::fs::read_to_string(&path).map_err(|source| TracefsError::Read { path, source })
}

/// Reads every format file we attach to and derives the offsets.
pub fn read_offsets(root: &Path) -> Result<Offsets, TracefsError> {
    let mut enter_args = None;
    let mut exit_ret = None;
    let check = |tracepoint: &str, found: u64, slot: &mut Option<u64>| {
        let expected = *slot.get_or_insert(found);
        if found == expected {
            Ok(())
        } else {
            Err(TracefsError::Layout {
                tracepoint: tracepoint.to_string(),
                index: 0,
                found,
                expected,
            })
        }
    };
    for (name, args) in SYSCALLS {
        let enter = format!("sys_enter_{name}");
        let base = enter_layout(&enter, &read_format(root, &enter)?, args)?;
        check(&enter, base, &mut enter_args)?;
        let exit = format!("sys_exit_{name}");
        let ret = field_offset(&read_format(root, &exit)?, "ret").ok_or_else(|| {
            TracefsError::MissingField {
                tracepoint: exit.clone(),
                field: "ret".into(),
            }
        })?;
        if let Some(expected) = exit_ret
            && ret != expected
        {
            return Err(TracefsError::RetMismatch {
                tracepoint: exit,
                found: ret,
                expected,
            });
        }
        exit_ret = Some(ret);
    }
    let close = read_format(root, "sys_enter_close")?;
    let fd = enter_layout("sys_enter_close", &close, &["fd"])?;
    check("sys_enter_close", fd, &mut enter_args)?;
    Ok(Offsets {
        enter_args: enter_args.unwrap_or(16),
        exit_ret: exit_ret.unwrap_or(16),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECVMSG: &str = "name: sys_enter_recvmsg\nID: 2210\nformat:\n\
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n\
\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;\n\
\tfield:int fd;\toffset:16;\tsize:8;\tsigned:0;\n\
\tfield:struct user_msghdr * msg;\toffset:24;\tsize:8;\tsigned:0;\n\
\tfield:unsigned int flags;\toffset:32;\tsize:8;\tsigned:0;\n";

    #[test]
    fn parses_offsets_including_pointer_fields() {
        assert_eq!(field_offset(RECVMSG, "fd"), Some(16));
        assert_eq!(field_offset(RECVMSG, "msg"), Some(24));
        assert_eq!(field_offset(RECVMSG, "flags"), Some(32));
        assert_eq!(field_offset(RECVMSG, "nope"), None);
        assert_eq!(
            enter_layout("t", RECVMSG, &["fd", "msg", "flags"]).unwrap(),
            16
        );
    }

    #[test]
    fn lazy_preempt_header_shifts_and_is_accepted() {
        let shifted = "\tfield:int __syscall_nr;\toffset:16;\tsize:4;\tsigned:1;\n\
\tfield:int fd;\toffset:24;\tsize:8;\tsigned:0;\n\
\tfield:struct user_msghdr * msg;\toffset:32;\tsize:8;\tsigned:0;\n";
        assert_eq!(enter_layout("t", shifted, &["fd", "msg"]).unwrap(), 24);
    }

    #[test]
    fn gaps_between_arguments_are_refused() {
        let broken = RECVMSG.replace("msg;\toffset:24", "msg;\toffset:28");
        assert!(matches!(
            enter_layout("t", &broken, &["fd", "msg"]),
            Err(TracefsError::Layout {
                index: 1,
                found: 28,
                ..
            })
        ));
        assert!(matches!(
            enter_layout("t", RECVMSG, &["fd", "missing"]),
            Err(TracefsError::MissingField { .. })
        ));
    }

    #[test]
    fn this_kernel_has_a_consistent_layout() {
        // Root on the project's machines, where `cargo xtask setup` mounts tracefs.
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: tracefs format files need root");
            return;
        }
        let offsets = read_offsets(Path::new("/sys/kernel/tracing")).unwrap();
        assert!(offsets.enter_args >= 16 && offsets.exit_ret >= 16);
    }
}
