import Foundation
import LifeboatCore
import LifeboatSite
import LifeboatVault
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// What a failover did, as `lifeboat failover` reports it (text or JSON).
public struct FailoverReport: Codable, Sendable {
    public var site: String
    public var generation: Int64
    public var forkLSN: LSN
    public var pointID: Int64?
    public var pointTime: Date?
    public var pointKind: String?
    /// How old the point was when the failover chose it: the writes after it are not in the
    /// failed-over disks (the RPO actually lost, besides `forsakenLSNs`).
    public var pointAgeSeconds: Double?
    /// LSNs the vault held past the point, set aside with the old generation (not lost: kept for
    /// re-protect), and the points among them.
    public var forsakenLSNs: UInt64
    public var forsakenPoints: Int
    /// The site that serves the disks now.
    public var recoveredSite: String
    /// Command to disks ready to serve (the mount adds its own seconds, reported by `--mount`).
    public var seconds: Double
    /// A failover interrupted before (kill -9, power loss) and finished by this run.
    public var resumed: Bool
    /// A planned failover: the source stopped serving writes before its final point, which is
    /// this one — nothing it acknowledged is missing — and these are its digests, taken by the
    /// source at that marker (the failed-over disks are that point).
    public var planned: Bool = false
    public var finalDigests: [String: String]?
}

/// Unplanned failover and commit (decision 0012), on the host that holds the vault.
public enum Failover {
    /// Fails the group of `vault` over to the point `selector` names: prepares a site at `root`
    /// whose disks are that point (nothing copied: they read it until filled), then starts the
    /// vault's next generation, owned by that site, at the point's LSN. Run again after an
    /// interruption, it finishes what it began (the site's owner token says which step is done).
    public static func unplanned(vault: Vault, site name: String, point selector: String, to root: FilePath, hostName: String, keyFile: String? = nil) throws -> FailoverReport {
        let started = ContinuousClock.now
        guard let groupID = try vault.groupID() else { throw LifeboatError(.notFound, "the vault holds no group for site '\(name)' yet", path: vault.root.string) }
        let current = try vault.generation()
        // An interrupted failover to this directory: finish it.
        if let existing = try? Site.open(root) {
            return try resume(existing, vault: vault, site: name, current: current, started: started)
        }
        guard current.state != .failedOver else {
            throw LifeboatError(.busy, "site '\(name)' is already failed over (generation \(current.number) at LSN \(current.forkLSN), served by \(current.ownerName)): "
                                + "commit it first (`lifeboat failover commit`)", path: vault.root.string)
        }
        let (lsn, point) = try PointSelector.resolve(selector, in: vault)
        guard lsn >= current.forkLSN else {
            throw LifeboatError(.invalidArgument, "point '\(selector)' (LSN \(lsn)) is older than generation \(current.number)'s fork at LSN \(current.forkLSN): "
                                + "pick a point of the current generation", path: vault.root.string)
        }
        try vault.requireConsistent(lsn)
        let generation = SiteGeneration(generation: current.number + 1, owner: SiteGeneration.newOwnerToken(), forkLSN: lsn.rawValue, fenced: nil)
        let recovery = SiteConfig.Recovery(vault: absolute(vault.root), lsn: lsn.rawValue, pointID: point?.id, keyFile: keyFile)
        let site: Site
        do {
            site = try Site.prepareRecovered(at: root, groupID: groupID, disks: try vault.disks(), recovery: recovery, generation: generation)
        } catch let e as LifeboatError where e.code == .alreadyExists {
            throw e
        } catch {
            removePrepared(root)
            throw error
        }
        CrashPoint.reached("failover.prepared")
        let outcome = try vault.fork(at: lsn, pointID: point?.id, owner: generation.owner, ownerName: "\(hostName):\(site.root)")
        CrashPoint.reached("failover.forked")
        return FailoverReport(site: name, generation: outcome.generation.number, forkLSN: lsn, pointID: point?.id, pointTime: point?.time,
                              pointKind: point?.kind.rawValue, pointAgeSeconds: point.map { Date().timeIntervalSince($0.time) },
                              forsakenLSNs: outcome.forsakenLSNs.map { UInt64($0.count) } ?? 0, forsakenPoints: outcome.forsakenPoints,
                              recoveredSite: site.root.string, seconds: started.duration(to: .now).inSeconds, resumed: false)
    }

    /// Planned failover: asks the source to drain (it stops serving writes, marks a final point
    /// and ships everything), waits up to `timeout` for it, then fails over at exactly that
    /// point. A source that does not drain in time: the plan is withdrawn, nothing changes.
    public static func planned(vault: Vault, site name: String, to root: FilePath, hostName: String, keyFile: String? = nil,
                               timeout: Duration, progress: (String) -> Void = { _ in }) throws -> FailoverReport {
        let started = ContinuousClock.now
        if let existing = try? Site.open(root) {
            return try resume(existing, vault: vault, site: name, current: try vault.generation(), started: started, planned: true)
        }
        let asked = try vault.planFailover()
        CrashPoint.reached("failover.planned")
        progress("asked generation \(asked.number)'s owner (\(asked.ownerName)) to stop serving writes and drain")
        let lsn = try waitForDrain(LocalHistory(vault: vault), since: started, timeout: timeout, path: vault.root.string,
                                   giveUp: "the planned failover is withdrawn and nothing changed; if the source is gone, fail over unplanned")
        guard let point = try vault.points().last(where: { $0.lsn == lsn }) else {
            throw LifeboatError(.internalError, "the source drained at LSN \(lsn) but the vault has no point there", path: vault.root.string)
        }
        progress("drained: final point \(point.id ?? 0) at LSN \(lsn)")
        let generation = SiteGeneration(generation: asked.number + 1, owner: SiteGeneration.newOwnerToken(), forkLSN: lsn.rawValue, fenced: nil)
        let recovery = SiteConfig.Recovery(vault: absolute(vault.root), lsn: lsn.rawValue, pointID: point.id, keyFile: keyFile)
        let site: Site
        do {
            guard let groupID = try vault.groupID() else { throw LifeboatError(.notFound, "the vault holds no group", path: vault.root.string) }
            site = try Site.prepareRecovered(at: root, groupID: groupID, disks: try vault.disks(), recovery: recovery, generation: generation)
        } catch {
            // Nothing was made: the source, drained for nothing, serves writes again.
            removePrepared(root)
            let failed = LifeboatError.wrapping(error, "cannot make the failed-over site", path: root.string)
            let withdrawn = (try? vault.withdrawPlannedFailover()) != nil
            throw LifeboatError(failed.code, failed.description + (withdrawn ? "; the planned failover is withdrawn: the source serves writes again"
                                                                   : "; the planned failover could not be withdrawn: `lifeboat failover cancel` lets the source serve writes again"))
        }
        CrashPoint.reached("failover.prepared")
        let outcome = try vault.fork(at: lsn, pointID: point.id, owner: generation.owner, ownerName: "\(hostName):\(site.root)", planned: true)
        CrashPoint.reached("failover.forked")
        let names = Dictionary(uniqueKeysWithValues: try vault.disks().map { ($0.id, $0.name) })
        var report = FailoverReport(site: name, generation: outcome.generation.number, forkLSN: lsn, pointID: point.id, pointTime: point.time,
                                    pointKind: point.kind.rawValue, pointAgeSeconds: Date().timeIntervalSince(point.time),
                                    forsakenLSNs: outcome.forsakenLSNs.map { UInt64($0.count) } ?? 0, forsakenPoints: outcome.forsakenPoints,
                                    recoveredSite: site.root.string, seconds: started.duration(to: .now).inSeconds, resumed: false)
        report.planned = true
        report.finalDigests = Dictionary(uniqueKeysWithValues: try point.digestMap().map { (names[$0.key] ?? "\($0.key)", $0.value.description) })
        return report
    }

    /// The current owner's final point once it has drained, polled every 100 ms; past `timeout`
    /// the plan is withdrawn (the owner serves again) and `giveUp` says what that means.
    static func waitForDrain(_ history: VaultHistory, since started: ContinuousClock.Instant, timeout: Duration, path: String, giveUp: String) throws -> LSN {
        while true {
            if let drained = try history.currentGeneration().drainedLSN { return drained }
            guard started.duration(to: .now) < timeout else {
                try? history.withdrawPlannedFailover()
                throw LifeboatError(.busy, "the current owner did not drain within \(describeDuration(timeout.inSeconds)) (is its protect running and reaching the vault?): "
                                    + giveUp, path: path)
            }
            usleep(100_000)
        }
    }

    /// A site a failover prepared at `root` before it was interrupted: done if the vault names it
    /// owner; forked now if the vault is still in the generation before it; refused otherwise.
    /// `planned`: asked by a planned failover, which forks only while the source stays drained.
    private static func resume(_ site: Site, vault: Vault, site name: String, current: GroupGeneration, started: ContinuousClock.Instant,
                               planned asked: Bool = false) throws -> FailoverReport {
        let claim = try SiteGeneration.load(site)
        guard let recovery = site.config.recoveredFrom, site.config.groupID == (try vault.groupID()) else {
            throw LifeboatError(.alreadyExists, "a site already exists here, and no failover of site '\(name)' made it", path: site.root.string)
        }
        var outcome: ForkOutcome?
        if current.owner != claim.owner {
            guard claim.generation == current.number + 1, current.state != .failedOver else {
                throw LifeboatError(.alreadyExists, "a site already exists here: a failover made it for generation \(claim.generation), "
                                    + "but the group is in generation \(current.number) served by \(current.ownerName)", path: site.root.string)
            }
            // A planned failover's site is forked only at the drained point it was made from,
            // and never once the plan is withdrawn (the source wrote on past that point).
            let planned = current.state == .failoverPlanned
            guard planned || !asked else {
                throw LifeboatError(.busy, "a site already exists here, made for a planned failover at LSN \(recovery.lsn), but the plan was withdrawn "
                                    + "(the source serves writes again): remove \(site.root) and run the failover again", path: site.root.string)
            }
            guard !planned || current.drainedLSN == LSN(recovery.lsn) else {
                throw LifeboatError(.busy, "a site already exists here, made for a planned failover at LSN \(recovery.lsn), but the source drained at "
                                    + "\(current.drainedLSN.map { "LSN \($0)" } ?? "no point yet"): remove \(site.root) and run the failover again", path: site.root.string)
            }
            outcome = try vault.fork(at: LSN(recovery.lsn), pointID: recovery.pointID, owner: claim.owner, ownerName: "\(hostName()):\(site.root)", planned: planned)
        }
        let point = try vault.points().first { $0.id == recovery.pointID }
        return FailoverReport(site: name, generation: claim.generation, forkLSN: LSN(recovery.lsn), pointID: recovery.pointID, pointTime: point?.time,
                              pointKind: point?.kind.rawValue, pointAgeSeconds: nil, forsakenLSNs: outcome?.forsakenLSNs.map { UInt64($0.count) } ?? 0,
                              forsakenPoints: outcome?.forsakenPoints ?? 0, recoveredSite: site.root.string,
                              seconds: started.duration(to: .now).inSeconds, resumed: true)
    }

    /// Makes the failover final: its point can no longer change.
    public static func commit(vault: Vault) throws -> GroupGeneration { try vault.commitFailover() }

    public static func hostName() -> String { ProcessInfo.processInfo.hostName }

    private static func absolute(_ path: FilePath) -> String {
        if path.isAbsolute { return path.string }
        return FilePath(FileManager.default.currentDirectoryPath).appending(path.components).string
    }

    /// Removes what a failed preparation left (never an existing site: it was refused before).
    private static func removePrepared(_ root: FilePath) {
        try? FileManager.default.removeItem(atPath: root.string)
    }
}
