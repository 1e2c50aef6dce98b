import Foundation
import LifeboatCore
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// A vault directory as a whole (decision 0010, "many groups"). It holds either
///
/// - **its own group at its root** — a site's vault on the same machine, the embedded default
///   (`VAULT/catalog.sqlite`, `bases/`, `layers/`: one `Vault`), or
/// - **one group per enrolled site** — a served vault: `VAULT/sites/NAME/`, each laid out like a
///   root group, beside the vault's certificate authority in `VAULT/tls/`.
///
/// A directory per group, not a group column in one catalog: two sites' ingests never share a
/// SQLite writer (they run in parallel), damage to one catalog is one site's, a site's own
/// group is the only directory its requests can reach, and a group is the same `Vault` whether
/// it is a site's own or one of many.
public struct VaultHome: Sendable {
    public let root: FilePath
    /// The key its groups' data is encrypted with at rest (nil: none given; decision 0011).
    public let key: VaultKey?

    public var sitesDirectory: FilePath { root.appending("sites") }
    public func siteRoot(_ name: String) -> FilePath { sitesDirectory.appending(name) }

    /// Opens the vault directory at `root`; with `create`, makes it when there is none.
    public init(root: FilePath, create: Bool = false, key: VaultKey? = nil) throws {
        self.root = root
        self.key = key
        var st = stat()
        if stat(root.string, &st) != 0 {
            let e = Errno(rawValue: errno)
            guard (e == .noSuchFileOrDirectory || e == .notDirectory) && create else {
                throw e == .noSuchFileOrDirectory ? LifeboatError(.notFound, "no vault here", path: root.string)
                    : LifeboatError.system(e, "cannot open the vault", path: root.string)
            }
            try PrivateFiles.makeDirectory(root)
        } else if (st.st_mode & S_IFMT) != S_IFDIR {
            throw LifeboatError(.invalidArgument, "is not a directory: a vault is one", path: root.string)
        } else if access(root.string, R_OK | X_OK) != 0 {
            throw LifeboatError.system(Errno(rawValue: errno), "cannot open the vault", path: root.string)
        } else if !create && !isVault {
            throw LifeboatError(.notFound, "no vault here (no catalog.sqlite, sites/ or tls/)", path: root.string)
        }
    }

    private var isVault: Bool {
        ["catalog.sqlite", "sites", "tls"].contains { access(root.appending($0).string, F_OK) == 0 }
    }

    /// Whether the directory holds a group at its root (a site's own local vault).
    public var hasOwnGroup: Bool { access(root.appending("catalog.sqlite").string, F_OK) == 0 }

    /// The sites whose groups the vault holds, by name.
    public func siteNames() throws -> [String] {
        let names: [String]
        do { names = try FileManager.default.contentsOfDirectory(atPath: sitesDirectory.string) } catch {
            return []
        }
        return names.filter { access(siteRoot($0).appending("catalog.sqlite").string, F_OK) == 0 }.sorted()
    }

    /// One site's group, made at its first use by the vault service (`create`).
    public func siteGroup(_ name: String, create: Bool = false) throws -> Vault {
        try SiteName.validate(name)
        let root = siteRoot(name)
        do { return try Vault(root: root, create: create, key: key) } catch let e as LifeboatError where e.code == .notFound {
            let known = (try? siteNames()) ?? []
            throw LifeboatError(.notFound, "the vault holds no group of site '\(name)' (it has: \(known.isEmpty ? "none" : known.joined(separator: ", ")))",
                                path: self.root.string)
        }
    }

    /// The group a reader (`points`, `mount`, `export`, `drill`, `vault verify`/`prune`) means:
    /// `--site NAME`'s; without it, the only one there is — the vault's own, or its one site's.
    public func group(site: String?) throws -> Vault {
        if let site { return try siteGroup(site) }
        if hasOwnGroup { return try Vault(root: root, key: key) }
        let names = try siteNames()
        switch names.count {
        case 0: throw LifeboatError(.notFound, "the vault holds no group yet (no site has shipped to it)", path: root.string)
        case 1: return try siteGroup(names[0])
        default:
            throw LifeboatError(.invalidArgument, "the vault holds the groups of \(names.count) sites (\(names.joined(separator: ", "))): name one with --site NAME",
                                path: root.string)
        }
    }

    /// A served group is encrypted exactly when the service has a key: a keyed service refuses
    /// a plain group (made by a service without one) rather than extend it in the clear, and a
    /// service without a key refuses an encrypted group it could not read.
    public func checkServedAtRest(_ vault: Vault, site: String) throws {
        switch (key, vault.atRest) {
        case (.some, .plain):
            throw LifeboatError(.invalidArgument, "the group of site '\(site)' is not encrypted (it was made by a vault serve without --key); "
                                + "serve it with --unencrypted, or give the site a new vault", path: vault.root.string)
        case (nil, .locked(let id)):
            throw LifeboatError(.permission, "the group of site '\(site)' is encrypted (key id \(id)): serve with --key FILE", path: vault.root.string)
        default:
            return
        }
    }

    /// A served vault keeps every group under `sites/`: one at its root would be nobody's.
    public func checkServable() throws {
        guard !hasOwnGroup else {
            throw LifeboatError(.invalidArgument, "this vault holds a site's own group at its root (a local vault); to serve it, "
                                + "move that group into sites/NAME/ (NAME: the site's name at enroll) or serve another directory", path: root.string)
        }
    }
}
