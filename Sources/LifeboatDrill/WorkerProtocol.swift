import Foundation

/// What the drill supervisor asks of its worker (`spec.json` in the workspace).
struct WorkerSpec: Codable {
    var vault: String
    /// The vault's key file, when its data is encrypted at rest.
    var vaultKey: String? = nil
    var point: DrilledPoint
    var plan: DrillPlan
    /// The source digest recorded in the point's marker, by disk name.
    var digests: [String: String]
    /// Keep the targets mounted after the checks until a stop signal (`drill --keep`).
    var keep: Bool
    /// Write records (LSNs) left out of the target: an exploration's crash state with
    /// unflushed writes dropped (`drill explore --drop-unflushed`).
    var dropped: [UInt64] = []
}

/// What the worker found (`result.json`).
struct WorkerResult: Codable {
    var disks: [DiskResult] = []
    var checksDoneAt: Date?
    /// Set when the worker could not finish: an infrastructure error, a signal.
    var error: String?
}
