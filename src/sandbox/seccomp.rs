//! The seccomp profile of a build step.
//!
//! Allow by default, deny (with `EPERM`) what a compiler, a shell or a test
//! suite never needs and what widens the kernel surface a build can reach:
//! mounting and namespaces (`mount`, `umount2`, `pivot_root`, `unshare`,
//! `setns`, the new mount API), kernel modules and kexec, `bpf`,
//! `perf_event_open`, `ptrace` and cross-process memory access, keyrings,
//! `userfaultfd`, io_uring, clock and swap changes, `reboot`, `acct`,
//! `open_by_handle_at` (the classic container escape), raw port I/O.
//! The list follows the syscalls Docker's default profile blocks for a
//! container without `CAP_SYS_ADMIN`; a deny list keeps new, harmless
//! syscalls (a newer libc's `clone3`, `faccessat2`...) working.

use serde_json::{Value, json};

/// Syscalls refused with `EPERM`.
pub const DENIED: [&str; 44] = [
    "acct",
    "add_key",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "create_module",
    "delete_module",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "get_kernel_syms",
    "init_module",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "ioperm",
    "iopl",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mount",
    "mount_setattr",
    "move_mount",
    "name_to_handle_at",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "pivot_root",
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
    "quotactl",
    "reboot",
    "request_key",
    "setns",
    "settimeofday",
    "swapoff",
    "swapon",
    "umount2",
    "unshare",
    "userfaultfd",
];

/// The `linux.seccomp` object of the runtime spec.
pub fn profile() -> Value {
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
        "syscalls": [
            {"names": DENIED.to_vec(), "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
        ],
    })
}
