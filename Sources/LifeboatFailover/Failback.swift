import Foundation
import LifeboatCore
import LifeboatSite
import LifeboatVault
import Logging
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// What a failback did.
public struct FailbackReport: Codable, Sendable {
    /// The catch-up to the current owner's final point (delta only, staged and switched).
    public var catchUp: ReprotectReport
    /// The generation this site owns now, and the point it starts from.
    public var generation: Int64
    public var forkLSN: LSN
    /// Zero loss: every disk's digest equals the final point's (taken by the old owner when it
    /// stopped serving writes).
    public var digestsEqual: Bool
    public var seconds: Double
}

/// Failback (decision 0012): a planned failover back to a re-protected site. The current owner
/// (the failed-over site) is asked to drain — it stops serving writes, marks a final point and
/// ships it; this site catches up to exactly that point by moving only what changed since it
/// was re-protected; then the vault starts the next generation there, owned by this site, which
/// serves writes again at its next `protect`. The old owner is fenced at its next contact.
public enum Failback {
    /// `SITE/state/failback.json`: the owner token this site takes, written before the vault's
    /// fork names it, so that an interruption between the two is finished, never lost.
    struct Pending: Codable {
        var token: String
        var lsn: LSN
        var generation: Int64
    }

    static func pendingPath(_ site: Site) -> FilePath { site.stateDirectory.appending("failback.json") }

    public static func run(site: Site, history: VaultHistory, drainTimeout: Duration, logger: Logger,
                           progress: (String) -> Void = { _ in }) throws -> FailbackReport {
        let started = ContinuousClock.now
        if let pending = try loadPending(site) { return try finishPending(site, history: history, pending, started: started, catchUp: nil) }
        let mine = try SiteGeneration.load(site)
        let current = try history.currentGeneration()
        guard let replicaLSN = mine.replicaLSN, mine.generation == current.number else {
            throw LifeboatError(.invalidArgument, "this site is not a replica of the group's current generation (\(current.number)): re-protect it first (`lifeboat reprotect`)",
                                path: site.root.string)
        }
        // The catch-up and the takeover need the site to themselves: protect must be stopped.
        do { try site.lock(for: "failing back").close() }
        _ = try history.planFailover()
        CrashPoint.reached("failback.asked")
        progress("asked generation \(current.number)'s owner (\(current.ownerName)) to stop serving writes and drain")
        let final = try Failover.waitForDrain(history, since: started, timeout: drainTimeout, path: site.root.string,
                                              giveUp: "the failback is withdrawn and nothing changed")
        let token = SiteGeneration.newOwnerToken()
        let catchUp: ReprotectReport
        do {
            guard let point = try history.pointListing().points.last(where: { $0.lsn == final }) else {
                throw LifeboatError(.internalError, "the owner drained at LSN \(final) but the vault lists no point there", path: site.root.string)
            }
            progress("drained: final point \(point.id ?? 0) at LSN \(final); catching up from LSN \(replicaLSN)")
            let becomes = SiteGeneration(generation: current.number, owner: "", forkLSN: current.forkLSN.rawValue,
                                         fenced: .init(since: Date(), why: "failing back: the takeover at LSN \(final) is not finished (run `lifeboat failback` again)"),
                                         replicaLSN: final.rawValue)
            let lock = try site.lock(for: "failing back")
            defer { try? lock.close() }
            let plan = try Reprotect.stage(site, history: history, to: point, since: LSN(replicaLSN), own: [:], generation: current.number, becomes: becomes,
                                           compareWholeDisks: mine.replicaDiffers == true)
            catchUp = try Reprotect.finish(site, plan, started: started, resumed: false)
            CrashPoint.reached("failback.caught-up")
            try StateFile.write(Pending(token: token, lsn: final, generation: current.number + 1), to: pendingPath(site))
        } catch {
            throw withdrawing(after: error, history: history, owner: current.ownerName, site: site)
        }
        return try finishPending(site, history: history, Pending(token: token, lsn: final, generation: current.number + 1), started: started, catchUp: catchUp)
    }

    /// A catch-up that failed before the takeover was written down: the owner drained for
    /// nothing, and would serve no writes until someone withdrew the plan, so the failback
    /// withdraws it (the owner serves again at its next round) and says so with the error.
    /// What the catch-up staged or switched stays: it is a point of the history, resumable.
    static func withdrawing(after error: any Error, history: VaultHistory, owner: String, site: Site) -> LifeboatError {
        let failed = LifeboatError.wrapping(error, "the failback's catch-up failed", path: site.root.string)
        do {
            try history.withdrawPlannedFailover()
            return LifeboatError(failed.code, failed.description + "; the failback is withdrawn: \(owner) serves writes again "
                                 + "(run `lifeboat failback` again once this is mended)")
        } catch {
            return LifeboatError(failed.code, failed.description + "; the failback could not be withdrawn either (\(error)): "
                                 + "\(owner) serves no writes until `lifeboat failover cancel` or a failback that succeeds")
        }
    }

    static func loadPending(_ site: Site) throws -> Pending? { try StateFile.read(Pending.self, at: pendingPath(site), what: "the failback's token") }

    /// The takeover: the vault's fork to this site (unless it is done), then `generation.json`.
    static func finishPending(_ site: Site, history: VaultHistory, _ pending: Pending, started: ContinuousClock.Instant,
                              catchUp: ReprotectReport?) throws -> FailbackReport {
        let current = try history.currentGeneration()
        if current.owner != pending.token {
            guard current.number == pending.generation - 1, current.drainedLSN == pending.lsn else {
                unlink(pendingPath(site).string)
                throw LifeboatError(.busy, "the failback was overtaken (the group is in generation \(current.number), \(current.state.rawValue)): run it again",
                                    path: site.root.string)
            }
            CrashPoint.reached("failback.pending")
            _ = try history.takeOver(at: pending.lsn, owner: pending.token, ownerName: "\(Failover.hostName()):\(site.root)")
            CrashPoint.reached("failback.took-over")
        }
        try SiteGeneration(generation: pending.generation, owner: pending.token, forkLSN: pending.lsn.rawValue, fenced: nil).save(site)
        unlink(pendingPath(site).string)
        try syncDirectory(site.stateDirectory)
        let report = catchUp ?? ReprotectReport(site: site.root.string, generation: pending.generation - 1, lsn: pending.lsn, pointID: nil, disks: [],
                                                bytesMoved: 0, diskBytes: 0, seconds: 0, keptJournal: nil, resumed: true)
        return FailbackReport(catchUp: report, generation: pending.generation, forkLSN: pending.lsn,
                              digestsEqual: report.disks.allSatisfy(\.digestEqual), seconds: started.duration(to: .now).inSeconds)
    }
}
