import Foundation
import LifeboatCore

/// A group as `lifeboat status --vault` shows it on the vault host: where it is in the failover
/// lifecycle (decision 0012), who writes it, how far the vault holds it, its newest and its
/// verified point.
public struct GroupStatus: Codable, Sendable {
    public struct Point: Codable, Sendable {
        public var id: Int64
        public var lsn: LSN
        public var time: Date
        /// How old it is now: for the newest point, the RPO a failover to `latest` would give up.
        public var ageSeconds: Double
    }
    public var site: String
    public var generation: Int64
    public var state: GroupState
    /// Who writes it: "its own site" for generation 1, else a failover's or failback's site.
    public var owner: String
    public var forkLSN: LSN
    public var lastLSN: LSN
    public var newestPoint: Point?
    /// The newest point whose latest drill passed, and when.
    public var verifiedPoint: Point?
    public var verifiedAt: Date?
    /// A planned failover: asked at, and the owner's final point once drained.
    public var plannedAt: Date?
    public var drainedLSN: LSN?
    /// LSNs of older generations set aside by failovers (kept for re-protect).
    public var forsakenLayers: Int

    public init(_ vault: Vault, site: String) throws {
        let g = try vault.generation()
        let now = Date()
        func point(_ p: RecoveryPoint?) -> Point? {
            guard let p, let id = p.id else { return nil }
            return Point(id: id, lsn: p.lsn, time: p.time, ageSeconds: (now.timeIntervalSince(p.time) * 1000).rounded() / 1000)
        }
        self.site = site
        generation = g.number
        state = g.state
        owner = g.ownerName
        forkLSN = g.forkLSN
        lastLSN = try vault.lsnRange().last
        newestPoint = point(try vault.points().last)
        let verified = try vault.verifiedPoint()
        verifiedPoint = point(verified?.point)
        verifiedAt = verified?.drill.finishedAt
        plannedAt = g.plannedAt
        drainedLSN = g.drainedLSN
        forsakenLayers = try vault.forsakenRanges().count
    }
}
