import Foundation
import LifeboatCore
import LifeboatJournal
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// What `lifeboat status` shows, and what a running `protect` writes to
/// `SITE/state/status.json` every second.
public struct SiteStatus: Codable, Sendable {
    public enum SiteState: String, Codable, Sendable {
        case protecting
        case stopped
        case stoppedUnclean = "stopped (unclean: recovery pending)"
    }

    public enum DiskState: String, Codable, Sendable {
        case protected, stopped, error
    }

    public struct Disk: Codable, Sendable {
        public var name: String
        public var sizeBytes: Int64
        /// LSN of the newest write to the disk (nil when unknown: protect not running yet).
        public var lastLSN: LSN?
        public var state: DiskState
        /// The digest root: while protect runs, at the newest point (`digestAtLSN`); when
        /// stopped cleanly, of the disk as it is.
        public var digest: String?
        public var digestAtLSN: LSN?
        public var error: String?
        /// A failed-over disk: the bytes still read from its recovery point, not yet copied into
        /// the primary (nil when none are).
        public var unfilledBytes: Int64?

        package init(name: String, sizeBytes: Int64, lastLSN: LSN?, state: DiskState, digest: String?, digestAtLSN: LSN? = nil, error: String?) {
            self.name = name
            self.sizeBytes = sizeBytes
            self.lastLSN = lastLSN
            self.state = state
            self.digest = digest
            self.digestAtLSN = digestAtLSN
            self.error = error
        }
    }

    public struct JournalFigures: Codable, Sendable {
        public var appendedLSN: LSN
        public var durableLSN: LSN
        public var bytes: Int64
        public var segments: Int
        public var error: String?

        package init(appendedLSN: LSN, durableLSN: LSN, bytes: Int64, segments: Int, error: String?) {
            self.appendedLSN = appendedLSN
            self.durableLSN = durableLSN
            self.bytes = bytes
            self.segments = segments
            self.error = error
        }
    }

    public var state: SiteState
    public var pid: Int32?
    public var mountpoint: String?
    public var updatedAt: Date
    public var journal: JournalFigures
    public var disks: [Disk]
    /// Shipping to the vault, when the site has one.
    public var shipping: ShippingStatus?
    /// The newest point a drill passed (filled in by `lifeboat status` from the vault).
    public var verified: VerifiedPoint?
    /// The generation of the group's history this site writes, and whether it is fenced.
    public var generation: SiteGeneration?
    /// A failover transition begun at this site and not finished (interrupted: the command that
    /// began it finishes it when run again): "re-protecting", "failing back", "changing point".
    public var transition: String?

    /// The transition files present at `site` (Docs/formats/failover.md), as `transition` says it.
    public static func transition(at site: Site) -> String? {
        if access(site.root.appending("reprotect/plan.json").string, F_OK) == 0 { return "re-protecting (run `lifeboat reprotect` or `lifeboat failback` again to finish)" }
        if access(site.stateDirectory.appending("failback.json").string, F_OK) == 0 { return "failing back (run `lifeboat failback` again to finish)" }
        if access(site.changePointIntentPath.string, F_OK) == 0 { return "changing point (run `lifeboat failover change-point` again to finish)" }
        return nil
    }

    package init(state: SiteState, pid: Int32?, mountpoint: String?, updatedAt: Date, journal: JournalFigures, disks: [Disk],
                 shipping: ShippingStatus?, verified: VerifiedPoint? = nil) {
        self.state = state
        self.pid = pid
        self.mountpoint = mountpoint
        self.updatedAt = updatedAt
        self.journal = journal
        self.disks = disks
        self.shipping = shipping
        self.verified = verified
    }

    public struct VerifiedPoint: Codable, Sendable {
        public var pointID: Int64
        public var pointTime: Date
        public var drilledAt: Date
        /// Verified RPO: how old the newest proven point is, now.
        public var rpoSeconds: Double
        public init(pointID: Int64, pointTime: Date, drilledAt: Date, rpoSeconds: Double) {
            self.pointID = pointID
            self.pointTime = pointTime
            self.drilledAt = drilledAt
            self.rpoSeconds = (rpoSeconds * 1000).rounded() / 1000  // milliseconds, like every time in JSON
        }
    }

    package static func path(in site: Site) -> FilePath { site.stateDirectory.appending("status.json") }

    /// Not synced: rewritten every second while protect runs, and after a power cut `read`
    /// answers from the files (protect is not running), not from this.
    package func save(in site: Site) throws {
        try writeFileAtomically(Self.path(in: site), Array(try SiteConfig.encoder.encode(self)), durable: false)
    }

    /// The status of a site: what the running protect last wrote, or, when none runs, what
    /// the files say (the digest read from the sidecars, exact after a clean stop).
    public static func read(_ site: Site) throws -> SiteStatus {
        let saved: SiteStatus?
        do {
            let bytes = try readWholeFile(path(in: site))
            saved = try? SiteConfig.decoder.decode(SiteStatus.self, from: Data(bytes))
        } catch {
            guard error == .noSuchFileOrDirectory else { throw LifeboatError.system(error, "cannot read the status", path: path(in: site).string) }
            saved = nil
        }
        if try site.isProtectRunning(), let saved { return saved }
        let checkpoint = try Checkpoint.load(from: site.stateDirectory)
        let segments = try JournalDirectory.segments(in: site.journalDirectory)
        let sizes = segments.map { fileSize($0.path) ?? 0 }
        let bytes = sizes.reduce(0, +)
        let disks = site.config.disks.map { d in
            let digest = try? DigestMap(path: site.digestPath(d), sizeBytes: d.sizeBytes, rebuildFrom: nil).root()
            let last = saved?.disks.first { $0.name == d.name }?.lastLSN
            guard FileManager.default.fileExists(atPath: site.primaryPath(d).string) else {
                return Disk(name: d.name, sizeBytes: d.sizeBytes, lastLSN: last, state: .error, digest: nil,
                            error: "the primary \(site.primaryPath(d)) is missing: protect cannot serve this disk")
            }
            return Disk(name: d.name, sizeBytes: d.sizeBytes, lastLSN: last, state: .stopped,
                        digest: checkpoint.cleanStop ? digest?.description : nil,
                        error: checkpoint.cleanStop ? nil : "not stopped cleanly: the digest is exact again after the next protect recovers")
        }
        let last = checkpoint.appliedLSN
        let appended = max(last, saved?.journal.appendedLSN ?? .zero)
        let generation = try SiteGeneration.load(site)
        // What waits to ship is what the local segments hold past the vault's LSN, now: the
        // saved figures are from the last running protect (a `journal recover` appends since).
        var shipping = saved?.shipping
        if var s = shipping {
            let pending = segments.indices.filter { i in
                let lastInSegment = i + 1 < segments.count ? LSN(segments[i + 1].firstLSN.rawValue - 1) : appended
                return lastInSegment > s.shippedLSN
            }
            s.pendingSegments = pending.count
            s.pendingBytes = pending.reduce(0) { $0 + sizes[$1] }
            shipping = s
        }
        var status = SiteStatus(
            state: checkpoint.cleanStop ? .stopped : .stoppedUnclean, pid: nil, mountpoint: nil, updatedAt: Date(),
            journal: JournalFigures(appendedLSN: appended, durableLSN: last, bytes: bytes, segments: segments.count, error: nil),
            disks: disks, shipping: shipping)
        status.generation = generation
        status.transition = transition(at: site)
        return status
    }
}
