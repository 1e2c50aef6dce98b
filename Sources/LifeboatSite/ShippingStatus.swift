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

    public init(vault: String) { self.vault = vault }
}
