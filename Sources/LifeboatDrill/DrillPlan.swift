import Foundation
import LifeboatCore

/// A drill plan (Docs/operations.md, "Drill plans"): which point to test and, per disk, the
/// checks to run on it. Parsed from YAML by `PlanParser`; sent to the drill worker as JSON.
public struct DrillPlan: Codable, Sendable {
    /// The plan file, as given (reports name it; relative paths in checks resolve against its directory).
    public var path: String
    /// A point selector; `--point` overrides it.
    public var point: String?
    /// The whole drill's limit: past it the drill is stopped and cleaned up (infrastructure error).
    public var timeout: TimeInterval
    public var disks: [DiskPlan]

    public var directory: String { (absolutePath(path) as NSString).deletingLastPathComponent }

    public static let defaultTimeout: TimeInterval = 30 * 60
}

public struct DiskPlan: Codable, Sendable {
    /// The disk's name in the vault.
    public var name: String
    public var filesystem: FilesystemKind
    public var checks: [CheckPlan]
    /// Where the disk is named in the plan file (for errors found after parsing).
    public var line: Int

    /// Whether the drill mounts this disk's filesystem (every check but `digest` and `boot` wants it).
    public var needsMount: Bool { filesystem != .none && checks.contains { $0.kind != .digest && $0.kind != .boot } }
}

public enum FilesystemKind: String, Codable, Sendable, CaseIterable {
    /// Found from the superblock; a disk with no known filesystem is not mounted.
    case auto, ext4, xfs
    /// Raw disk: nothing is mounted; scripts get the image path.
    case none
}

extension FilesystemKind {
    /// The filesystem whose magic the first 2 KiB of a disk carry: XFS ("XFSB" at 0) or
    /// ext2/3/4 (0xEF53 at 1080); nil for anything else.
    public static func detect(_ head: [UInt8]) -> FilesystemKind? {
        if head.count >= 4, head[0..<4] == [0x58, 0x46, 0x53, 0x42] { return .xfs }
        if head.count >= 1082, head[1080] == 0x53, head[1081] == 0xEF { return .ext4 }
        return nil
    }
}

public enum CheckKind: String, Codable, Sendable, CaseIterable {
    case digest, fsck, files, sqlite, script, boot
}

public struct CheckPlan: Codable, Sendable {
    public var kind: CheckKind
    /// The testcase name in reports: the kind, or the plan's `name`.
    public var name: String
    public var timeout: TimeInterval
    /// files: the manifest (sha256sum format), relative to the plan's directory.
    public var manifest: String?
    /// sqlite: the database, relative to the filesystem's root.
    public var database: String?
    /// script: a shell command (`sh -c`), run in the plan's directory.
    public var run: String?
    /// boot: how to start the machine and what it must print.
    public var boot: BootOptions?
    public var line: Int

    public static func defaultTimeout(_ kind: CheckKind) -> TimeInterval {
        switch kind {
        case .digest, .fsck: 15 * 60
        case .files, .sqlite, .script, .boot: 5 * 60
        }
    }
}

/// The `boot` check's machine: the disk boots in qemu (Docs/operations.md, "The boot check").
public struct BootOptions: Codable, Sendable, Equatable {
    public enum Accelerator: String, Codable, Sendable, CaseIterable {
        /// KVM when /dev/kvm really runs guests (`clinux_kvm_runs_guests`), TCG otherwise.
        case auto, kvm, tcg
    }
    /// The check passes when a console line contains this text.
    public var expect: String
    /// The check fails at once when a console line contains this text.
    public var failOn: String?
    public var memoryMiB: Int = 256
    public var cpus: Int = 1
    public var accelerator: Accelerator = .auto
    /// A BIOS or UEFI firmware file (`-bios`); qemu's SeaBIOS when nil.
    public var firmware: String?
    /// Direct kernel boot instead of the disk's own boot loader: kernel, initrd, command line.
    public var kernel: String?
    public var initrd: String?
    public var append: String?

    public init(expect: String) { self.expect = expect }
}
