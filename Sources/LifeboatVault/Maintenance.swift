import Foundation
import LifeboatCore
import Logging
import SystemPackage

/// The vault's own upkeep: compaction after new layers arrive, retention every `pruneInterval`.
/// It belongs to whoever serves the vault — the local replica of a `protect` today, a vault
/// server later — not to the shipper: shipping only tells it that data arrived.
///
/// One thread, so a merge and a prune never compete for the writer lock with each other.
/// Compaction takes it only to commit each merge; a prune holds it throughout (an ingest waits
/// for it). Damage met by
/// either (a corrupt layer or catalog value) is the vault's problem, not shipping's: it is kept
/// in `lastError` (shown in `status`) and logged once, while segments keep shipping.
public final class VaultMaintenance: @unchecked Sendable {
    private let root: FilePath
    /// The key of an encrypted group (nil: a plain one).
    private let key: VaultKey?
    private let logger: Logger
    private let pruneInterval: Duration
    private let loop: BackgroundLoop
    private let state = ConditionLock()
    private var newData = false
    private var lastPrune = ContinuousClock.now
    private var errors: [String: String] = [:]

    public init(root: FilePath, key: VaultKey? = nil, logger: Logger, pruneInterval: Duration = .seconds(60)) {
        self.root = root
        self.key = key
        self.logger = logger
        self.pruneInterval = pruneInterval
        self.loop = BackgroundLoop(name: "lifeboat-vault-upkeep", interval: pruneInterval)
    }

    public func start() throws { try loop.start { [self] in self.round() } }

    /// Stops after the step in flight (an unfinished merge is only a file in incoming/).
    public func stop() { loop.stop() }

    /// New layers were ingested: compact soon.
    public func dataArrived() {
        state.withLock { newData = true }
        loop.poke()
    }

    /// The last failure of compaction or retention, nil once both last succeeded.
    public var lastError: String? {
        state.withLock { errors.isEmpty ? nil : errors.keys.sorted().compactMap { errors[$0] }.joined(separator: "; ") }
    }

    private func round() {
        let (compact, prune): (Bool, Bool) = state.withLock {
            defer { newData = false }
            return (newData, lastPrune.duration(to: .now) >= pruneInterval)
        }
        if compact {
            run("compaction") { _ = try Vault(root: root, key: key).compact() }
        }
        if prune && !loop.isStopping {
            state.withLock { lastPrune = .now }
            run("retention") {
                let report = try Vault(root: root, key: key).prune()
                if report.mergedLayers > 0 || !report.removedPoints.isEmpty {
                    logger.info("retention: pruned \(report.removedPoints.count) point(s), merged \(report.mergedLayers) layer(s); the vault starts at LSN \(report.baseLSN)")
                }
            }
        }
    }

    private func run(_ task: String, _ body: () throws -> Void) {
        let message: String?
        do {
            try body()
            message = nil
        } catch let e as LifeboatError where e.code == .notFound {
            message = nil  // no vault there (yet): nothing to maintain; shipping reports it
        } catch {
            message = "\(task): \(error)"
        }
        let isNew: Bool = state.withLock {
            defer { errors[task] = message }
            return message != nil && errors[task] != message
        }
        if isNew, let message { logger.error("\(message)") }
    }
}
