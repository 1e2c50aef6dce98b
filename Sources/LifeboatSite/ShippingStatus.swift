import Foundation
import LifeboatCore

/// Shipping's part of `status`: how far the vault holds the journal, what waits, and why
/// shipping or the vault's upkeep is failing. The shipper keeps it; status.json carries it.
public struct ShippingStatus: Codable, Sendable {
    /// Where segments go: a vault directory (later, a vault server's address).
    public var vault: String
    /// Everything up to this LSN is in the vault.
    public var shippedLSN: LSN = .zero
    public var pendingSegments = 0
    public var pendingBytes: Int64 = 0
    public var lastShippedAt: Date?
    public var error: String?
    /// While a disk's initial content is being copied into the vault: which and how far.
    public var initialReplication: String?
    /// The last failure of retention or compaction (vault damage they met): shipping goes on.
    public var maintenanceError: String?
    /// Since when shipping has been failing (the vault unreachable, refusing, full), if it is.
    public var pausedSince: Date?
    /// How far behind the vault is, in seconds: the oldest durable write it may lack became
    /// durable at most this long ago (conservative; 0 when it holds all that is durable).
    public var rpoSeconds: Double?
    /// `--bandwidth` as given, and the rate it allows now in bytes per second (nil: unlimited).
    public var bandwidth: String?
    public var bandwidthNow: Double?
    /// With a rate in force: the time to send what waits at that rate — the RPO a backlog will
    /// reach before it is caught up (journal bytes: the wire's zstd makes it less).
    public var predictedRPOSeconds: Double?
    /// `--spool-limit`: the unshipped journal kept at most (nil: none); past it, journal the
    /// vault lacks is dropped and the regions it wrote resynced (decision 0010).
    public var spoolLimit: Int64?
    /// Since when records have been dropped, and how much of the disks waits for a resync.
    public var droppingSince: Date?
    public var resyncPendingBytes: Int64?
    /// Why no point is marked now (the vault lacks dropped writes), if so.
    public var pointsPaused: String?

    public init(vault: String) { self.vault = vault }
}
