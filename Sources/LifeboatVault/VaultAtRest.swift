import GRDB
import LifeboatCore
import SystemPackage

/// Whether a group's data is encrypted at rest, and with which key (meta `keyID` in its
/// catalog; decision 0011).
public enum VaultAtRest: Sendable {
    case plain
    /// Encrypted, and this process holds the key.
    case sealed(VaultKey)
    /// Encrypted with the key `keyID`, which this process was not given.
    case locked(keyID: String)

    /// The key file of an encrypted group opened with its key.
    public var keyPath: FilePath? {
        if case .sealed(let key) = self { return key.path }
        return nil
    }

    public var isEncrypted: Bool {
        if case .plain = self { return false }
        return true
    }

    /// What the catalog says, reconciled with the key given (see `Vault.init`).
    static func settle(_ catalog: Catalog, key: VaultKey?, adopt: Bool, root: FilePath) throws -> VaultAtRest {
        let recorded = try catalog.read { db in try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'keyID'") }
        switch (recorded, key) {
        case (nil, nil): return .plain
        case (let id?, nil): return .locked(keyID: id)
        case (let id?, let key?):
            guard id == key.id else {
                throw LifeboatError(.permission, "the vault key given (key id \(key.id)) is not this vault's: its data is encrypted with key id \(id)",
                                    path: root.string)
            }
            return .sealed(key)
        case (nil, let key?):
            // A group with no disk holds no data yet: its writer (`adopt`) gives it the key (in a
            // write transaction: two processes adopting at once settle on one). One with data,
            // or opened by a reader, stays plain.
            guard adopt else { return .plain }
            let adopted = try catalog.write { db -> String? in
                if let id = try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'keyID'") { return id }
                guard try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM disk") == 0 else { return nil }
                try db.execute(sql: "INSERT INTO meta(key, value) VALUES ('keyID', ?)", arguments: [key.id])
                return key.id
            }
            guard let adopted else { return .plain }
            guard adopted == key.id else {
                throw LifeboatError(.permission, "the vault key given (key id \(key.id)) is not this vault's: its data is encrypted with key id \(adopted)",
                                    path: root.string)
            }
            return .sealed(key)
        }
    }

    /// The key, for a read or write of data: nil for a plain group; for an encrypted one
    /// without its key, the error that says how to give it.
    func key(root: FilePath) throws -> VaultKey? {
        switch self {
        case .plain: return nil
        case .sealed(let key): return key
        case .locked(let id):
            throw LifeboatError(.permission, "the vault's data is encrypted (key id \(id)): give its key file with --key FILE (or LIFEBOAT_VAULT_KEY)",
                                path: root.string)
        }
    }
}

extension Vault {
    /// Throws unless this process can read the group's data (plain, or encrypted and keyed).
    public func checkDataKey() throws { _ = try atRest.key(root: root) }

    /// The sealer of this group's layer frames (nil: a plain group).
    func frameSealer() throws -> FrameSealer? {
        guard let key = try atRest.key(root: root) else { return nil }
        guard let group = try groupID() else { throw LifeboatError(.invalidArgument, "the vault has no group yet (add its disks first)", path: root.string) }
        return FrameSealer(key: key, groupID: Hex.bytes(group))
    }

    func baseSealsPath(_ disk: DiskID) -> FilePath { basesDirectory.appending("\(disk.rawValue).seal") }

    /// The seals of `disk`'s base (nil: a plain group).
    func baseSeals(_ disk: VaultDisk, writable: Bool) throws -> BaseSeals? {
        guard let key = try atRest.key(root: root) else { return nil }
        guard let group = try groupID() else { throw LifeboatError(.invalidArgument, "the vault has no group yet (add its disks first)", path: root.string) }
        return try BaseSeals(path: baseSealsPath(disk.id), blocks: disk.blockCount, writable: writable, key: key, groupID: Hex.bytes(group), disk: disk.id)
    }

    /// The layers of `rows`, opened with the group's sealer (made once: an encrypted group's
    /// sealer reads the group id from the catalog).
    func openLayers(_ rows: [LayerRow]) throws -> [LayerReader] {
        guard !rows.isEmpty else { return [] }  // an encrypted group with no layer may have no group id yet
        let sealer = try frameSealer()
        return try rows.map { try LayerReader(path: layerPath($0), sealer: sealer) }
    }
}
