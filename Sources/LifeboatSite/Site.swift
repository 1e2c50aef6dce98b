import Foundation
import LifeboatCore
import LifeboatJournal
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// A site: the source side of protection, one directory.
///
/// ```
/// SITE/site.json               identity and disks (SiteConfig)
/// SITE/lock                    held (OFD lock) by the running `protect`
/// SITE/disks/NAME.img          the primary: the disk's live content, a sparse raw file
/// SITE/disks/NAME.base         the initial content, what `journal verify` replays onto
/// SITE/disks/NAME.digest       per-block XXH3-128 hashes (Docs/formats/digest.md)
/// SITE/disks/NAME.fill         a failed-over disk's blocks already in its primary (DiskBacking)
/// SITE/journal/*.seg           the replication journal (Docs/formats/journal.md)
/// SITE/state/checkpoint.json   the LSN the primaries are durable up to; clean-stop flag
/// SITE/state/status.json       what the running `protect` last reported
/// ```
public struct Site: Sendable {
    public let root: FilePath
    public internal(set) var config: SiteConfig

    public var journalDirectory: FilePath { root.appending("journal") }
    public var stateDirectory: FilePath { root.appending("state") }
    var disksDirectory: FilePath { root.appending("disks") }
    var configPath: FilePath { root.appending("site.json") }
    public var lockPath: FilePath { root.appending("lock") }

    public func primaryPath(_ disk: SiteConfig.Disk) -> FilePath { disksDirectory.appending(disk.name + ".img") }
    public func basePath(_ disk: SiteConfig.Disk) -> FilePath { disksDirectory.appending(disk.name + ".base") }
    public func digestPath(_ disk: SiteConfig.Disk) -> FilePath { disksDirectory.appending(disk.name + ".digest") }
    /// A failed-over disk's fill bitmap: which blocks its primary holds (absent once all do).
    public func fillPath(_ disk: SiteConfig.Disk) -> FilePath { disksDirectory.appending(disk.name + ".fill") }

    /// Creates a new, empty site at `root` (the directory may exist but must not hold a site).
    public static func initialize(at root: FilePath, vault: String? = nil, groupID: String = SiteConfig.newGroupID()) throws -> Site {
        let fm = FileManager.default
        if fm.fileExists(atPath: root.appending("site.json").string) {
            throw LifeboatError(.alreadyExists, "a site already exists here", path: root.string)
        }
        for dir in ["", "disks", "journal", "state"] { try PrivateFiles.makeDirectory(root.appending(dir)) }
        let config = SiteConfig(version: SiteConfig.currentVersion, groupID: groupID, createdAt: Date(), disks: [], nextDiskID: 0, vault: vault)
        var site = Site(root: root, config: config)
        try site.save()
        try Checkpoint(appliedLSN: .zero, cleanStop: true).save(in: site.stateDirectory)
        _ = site
        return site
    }

    /// Opens an existing site (and makes it private if an older lifeboat left it readable).
    public static func open(_ root: FilePath) throws -> Site {
        let path = root.appending("site.json")
        let data: [UInt8]
        do { data = try readWholeFile(path) } catch {
            var st = stat()
            if error == .noSuchFileOrDirectory || error == .notDirectory {
                if stat(root.string, &st) == 0 && (st.st_mode & S_IFMT) != S_IFDIR {
                    throw LifeboatError(.invalidArgument, "is a file, not a site directory", path: root.string)
                }
                throw LifeboatError(.notFound, "no site here (run `lifeboat init --site \(root)` first)", path: root.string)
            }
            throw LifeboatError.system(error, "cannot read the site's configuration", path: path.string)
        }
        let config: SiteConfig
        do { config = try SiteConfig.decoder.decode(SiteConfig.self, from: Data(data)) } catch {
            throw LifeboatError(.corrupt, "site.json is not valid", path: path.string, cause: error)
        }
        guard config.version <= SiteConfig.currentVersion else {
            throw LifeboatError(.unsupported, "site layout version \(config.version) is newer than this lifeboat's (\(SiteConfig.currentVersion))", path: path.string)
        }
        guard config.groupIDBytes.count == 16 else {
            throw LifeboatError(.corrupt, "site.json has a malformed groupID", path: path.string)
        }
        PrivateFiles.tighten(root)
        return Site(root: root, config: config)
    }

    /// Where the site keeps its vault bundle (`vault enroll`'s) when its vault is on the network.
    public var vaultBundlePath: FilePath { stateDirectory.appending("vault.bundle") }

    /// Whether the site's vault is on another machine (`lifeboat://HOST:PORT`), not a directory.
    public var hasRemoteVault: Bool { config.vault?.hasPrefix("lifeboat://") == true }

    /// Points the site at a vault (an existing site protected before it had one ships its
    /// whole journal, from each disk's initial content, at the next protect).
    public mutating func setVault(_ path: String) throws {
        let lockFD = try lock(for: "changing the vault")
        defer { try? lockFD.close() }
        if let current = config.vault, current != path {
            throw LifeboatError(.alreadyExists, "the site already ships to \(current)", path: root.string)
        }
        config.vault = path
        try save()
    }

    mutating func save() throws {
        let data: Data
        do { data = try SiteConfig.encoder.encode(config) } catch { throw LifeboatError(.io, "cannot encode site.json: \(error)") }
        try writeFileAtomically(configPath, Array(data))
    }

    /// Whether a `protect` holds the site (its lock is taken). Needs only read access to the
    /// lock file (F_OFD_GETLK), so a monitoring user with read access gets the truth; one
    /// without gets a permission error, never "not running".
    public func isProtectRunning() throws -> Bool {
        let fd: FileDescriptor
        do { fd = try FileDescriptor.open(lockPath, .readOnly, options: [.closeOnExec]) } catch {
            if (error as? Errno) == .noSuchFileOrDirectory { return false }  // never protected
            throw LifeboatError.wrapping(error, "cannot tell whether protect is running", path: lockPath.string)
        }
        defer { try? fd.close() }
        do { return try fd.isLockedElsewhere() } catch {
            throw LifeboatError.wrapping(error, "cannot tell whether protect is running", path: lockPath.string)
        }
    }

    /// Takes the site lock for this process (protect, disk create); `.busy` if held elsewhere.
    public func lock(for purpose: String) throws -> FileDescriptor {
        let fd: FileDescriptor
        do { fd = try FileDescriptor.open(lockPath, .readWrite, options: [.create, .closeOnExec], permissions: [.ownerReadWrite]) } catch {
            throw LifeboatError.wrapping(error, "cannot open the site lock", path: lockPath.string)
        }
        let taken: Bool
        do { taken = try fd.tryLockExclusive() } catch {
            try? fd.close()
            throw LifeboatError.wrapping(error, "cannot lock the site", path: lockPath.string)
        }
        guard taken else {
            try? fd.close()
            throw LifeboatError(.busy, "the site is in use by a running `lifeboat protect`; stop it before \(purpose)", path: root.string)
        }
        return fd
    }
}
