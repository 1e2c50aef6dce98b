import Foundation
import LifeboatCore
import LifeboatVault
import Synchronization
import SystemPackage

/// `SITE/state/generation.json`: which generation of its group's history this site writes
/// (decision 0012), with the owner token the vault knows it by, and — once the vault has named a
/// newer generation — that it is fenced and why. Absent: the site that created the group, in
/// generation 1, not fenced.
public struct SiteGeneration: Codable, Equatable, Sendable {
    public var generation: Int64
    /// The token the vault's generation row names as its owner ("" for generation 1's site).
    public var owner: String
    /// The failover that made this site, if one did: the LSN its history continues after.
    public var forkLSN: UInt64?
    public var fenced: Fence?
    /// A planned failover asked this site to drain: it serves no writes; `finalLSN` is its final
    /// marker once appended. Durable, so that a restart before the fork serves no write the
    /// fork would leave behind.
    public var draining: Drain?
    /// A re-protected site: a replica of `generation`, its disks equal to the history at this
    /// LSN (it serves no writes until a failback makes it the owner).
    public var replicaLSN: UInt64?
    /// The last re-protect switched, then found a disk's digest unequal to the point's: what the
    /// history says changed does not account for this disk, so the next re-protect or failback
    /// compares every block with the point instead.
    public var replicaDiffers: Bool?

    public struct Drain: Codable, Equatable, Sendable {
        public var since: Date
        public var finalLSN: UInt64?
    }

    public struct Fence: Codable, Equatable, Sendable {
        public init(since: Date, why: String) {
            self.since = since
            self.why = why
        }
        public var since: Date
        /// The vault's words: which generation owns the group now, since when, served by whom.
        public var why: String
    }

    public init(generation: Int64, owner: String, forkLSN: UInt64?, fenced: Fence?, draining: Drain? = nil, replicaLSN: UInt64? = nil) {
        self.generation = generation
        self.owner = owner
        self.forkLSN = forkLSN
        self.fenced = fenced
        self.draining = draining
        self.replicaLSN = replicaLSN
    }

    public var claim: WriterClaim { WriterClaim(generation: generation, owner: owner) }

    public static let original = SiteGeneration(generation: 1, owner: "", forkLSN: nil, fenced: nil)

    static func path(in site: Site) -> FilePath { site.stateDirectory.appending("generation.json") }

    public static func load(_ site: Site) throws -> SiteGeneration {
        try StateFile.read(SiteGeneration.self, at: path(in: site), what: "the site's generation") ?? .original
    }

    /// Written atomically and durably: a fence must survive a crash (a restart must not serve
    /// writes the vault will refuse).
    public func save(_ site: Site) throws { try StateFile.write(self, to: Self.path(in: site)) }

    /// A new owner token: 16 random bytes, hex.
    public static func newOwnerToken() -> String { SiteConfig.newGroupID() }
}

/// Whether the running `protect` may serve writes: shared by the write path (one atomic load per
/// write) and the shipper, which fences the site — durably first — when the vault names a newer
/// generation.
public final class SiteFence: @unchecked Sendable {
    private let site: Site
    private let refusing: Atomic<Bool>
    private let state: Mutex<SiteGeneration>

    public init(site: Site) throws {
        self.site = site
        let loaded = try SiteGeneration.load(site)
        refusing = Atomic(loaded.fenced != nil || loaded.draining != nil)
        state = Mutex(loaded)
    }

    public var claim: WriterClaim { state.withLock { $0.claim } }
    public var generation: SiteGeneration { state.withLock { $0 } }

    /// Why writes are refused, nil while they are served. The write path asks it under the
    /// apply lock, so that a drain's final marker (appended with that lock held exclusively)
    /// follows every write acknowledged before it and precedes none.
    @inline(__always)
    public var refusal: LifeboatError? {
        guard refusing.load(ordering: .acquiring) else { return nil }
        let why = state.withLock { g in
            g.fenced?.why ?? g.draining.map { "draining for a planned failover since \(ISO8601DateFormatter().string(from: $0.since)): no writes are served here now" }
        }
        return LifeboatError(.fenced, why ?? "fenced", path: site.root.string)
    }

    /// A planned failover asked for a drain: writes stop at once, and durably.
    public func startDraining() throws {
        try state.withLock { g in
            guard g.draining == nil else { return }
            g.draining = .init(since: Date(), finalLSN: nil)
            refusing.store(true, ordering: .releasing)
            try g.save(site)
        }
    }

    /// The final marker is at `lsn` (durable before it is reported to the vault).
    public func drained(at lsn: LSN) throws {
        try state.withLock { g in
            g.draining?.finalLSN = lsn.rawValue
            try g.save(site)
        }
    }

    /// The planned failover was withdrawn before it forked: writes are served again.
    public func stopDraining() throws {
        try state.withLock { g in
            guard g.draining != nil, g.fenced == nil else { return }
            g.draining = nil
            try g.save(site)
            refusing.store(false, ordering: .releasing)
        }
    }

    /// Fences the site: writes stop at once, then `generation.json` records it, so that a
    /// restart stays fenced (a crash between the two serves until the vault is reached again,
    /// which refuses those writes' records and fences it anew). Returns false when it already was.
    @discardableResult
    public func fence(why: String) throws -> Bool {
        try state.withLock { g in
            guard g.fenced == nil else { return false }
            g.fenced = .init(since: Date(), why: why)
            refusing.store(true, ordering: .releasing)
            try g.save(site)
            return true
        }
    }
}
