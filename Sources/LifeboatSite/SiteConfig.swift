import Foundation
import LifeboatCore
import LifeboatVault
import SystemPackage

/// `SITE/site.json`: the site's identity and its disks. Written atomically; read at every
/// command. `version` is the site layout version: a newer one is refused.
public struct SiteConfig: Codable, Equatable, Sendable {
    public static let currentVersion = 1

    public struct Disk: Codable, Equatable, Sendable {
        public var id: UInt32
        public var name: String
        public var sizeBytes: Int64
        public var createdAt: Date
        /// The image the disk's initial content came from, if any.
        public var source: String?

        public var diskID: DiskID { DiskID(id) }
        public var blockCount: Int { Int(sizeBytes >> Int64(BlockSize.shift)) }
    }

    public var version: Int
    /// The protection group's id: 16 random bytes, hex. Every journal segment carries it.
    public var groupID: String
    public var createdAt: Date
    public var disks: [Disk]
    public var nextDiskID: UInt32
    /// The vault this site ships to (a directory), if any.
    public var vault: String?
    /// A site a failover made (decision 0012): its disks started as this point of the group's
    /// vault and read from it whatever their primaries do not hold yet (`disks/NAME.fill`).
    public var recoveredFrom: Recovery?

    public struct Recovery: Codable, Equatable, Sendable {
        /// The group's directory in the vault (`VAULT/sites/NAME` or a site's own vault).
        public var vault: String
        /// The fork: the point's LSN, which this site's journal continues after.
        public var lsn: UInt64
        public var pointID: Int64?
        /// The key file of an encrypted vault (kept outside the vault, as `vault serve --key`).
        public var keyFile: String?
        public init(vault: String, lsn: UInt64, pointID: Int64?, keyFile: String?) {
            self.vault = vault
            self.lsn = lsn
            self.pointID = pointID
            self.keyFile = keyFile
        }

        /// The vault key, when the vault is encrypted.
        public func key() throws -> VaultKey? { try keyFile.map { try VaultKey.load(FilePath($0)) } }
    }

    public var groupIDBytes: [UInt8] { Hex.bytes(groupID) }

    public func disk(named name: String) -> Disk? { disks.first { $0.name == name } }

    public static func newGroupID() -> String {
        var rng = SystemRandomNumberGenerator()
        return (0..<16).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &rng)) }.joined()
    }

    package static let encoder = LifeboatJSON.encoder()
    package static let decoder = LifeboatJSON.decoder()
}
