import Foundation
import LifeboatCore
import LifeboatSite
import LifeboatVault
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Change point (decision 0012): before commit, the failed-over site's disks become an older
/// point, and what was written on them since is discarded (set aside in the vault, its journal
/// kept). Steps, each durable: the intent (`state/change-point.json`: protect refuses to start
/// meanwhile) → the vault's fork moved (`Vault.changeFork`) → the site's disks reset to the new
/// point → the intent removed. Interrupted, the same command finishes it.
public enum ChangePoint {
    struct Intent: Codable {
        var lsn: LSN
        var pointID: Int64?
    }

    public static func run(vault: Vault, site root: FilePath, point selector: String) throws -> FailoverReport {
        let started = ContinuousClock.now
        var site = try Site.open(root)
        guard let recovery = site.config.recoveredFrom, site.config.groupID == (try vault.groupID()) else {
            throw LifeboatError(.invalidArgument, "not a site a failover of this group made: nothing to change the point of", path: root.string)
        }
        let lock = try site.lock(for: "changing its point")
        defer { try? lock.close() }
        let claim = try SiteGeneration.load(site).claim
        var resumed = false
        let intent: Intent
        if let begun = try StateFile.read(Intent.self, at: site.changePointIntentPath, what: "the change of point begun") {
            intent = begun
            resumed = true
        } else {
            let current = try vault.generation()
            guard current.state == .failedOver else {
                throw LifeboatError(.invalidArgument, "no failover to change the point of: the group is \(current.state.rawValue) in generation \(current.number)", path: vault.root.string)
            }
            let (lsn, point) = try PointSelector.resolve(selector, in: vault)
            guard lsn < LSN(recovery.lsn) else {
                throw LifeboatError(.invalidArgument, "point '\(selector)' (LSN \(lsn)) is not older than the failover's (LSN \(recovery.lsn)): "
                                    + "a change of point goes back (the points after the failover's were set aside)", path: vault.root.string)
            }
            try vault.requireConsistent(lsn)
            intent = Intent(lsn: lsn, pointID: point?.id)
            try StateFile.write(intent, to: site.changePointIntentPath)
        }
        CrashPoint.reached("change-point.intent")
        let outcome = try vault.changeFork(to: intent.lsn, pointID: intent.pointID, as: claim)
        CrashPoint.reached("change-point.forked")
        _ = try Reprotect.keepJournal(site, generation: claim.generation + 1)
        try site.resetRecovered(to: SiteConfig.Recovery(vault: recovery.vault, lsn: intent.lsn.rawValue, pointID: intent.pointID, keyFile: recovery.keyFile))
        unlink(site.changePointIntentPath.string)
        try syncDirectory(site.stateDirectory)
        let point = try vault.points().first { $0.id == intent.pointID }
        return FailoverReport(site: root.string, generation: claim.generation, forkLSN: intent.lsn, pointID: intent.pointID, pointTime: point?.time,
                              pointKind: point?.kind.rawValue, pointAgeSeconds: point.map { Date().timeIntervalSince($0.time) },
                              forsakenLSNs: outcome.forsakenLSNs.map { UInt64($0.count) } ?? 0, forsakenPoints: outcome.forsakenPoints,
                              recoveredSite: root.string, seconds: started.duration(to: .now).inSeconds, resumed: resumed)
    }
}
