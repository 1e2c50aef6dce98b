import ArgumentParser
import Foundation
import LifeboatCore
import LifeboatCapture
import LifeboatSite
import LifeboatVault
import LifeboatIdentity
import LifeboatWire
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

struct InitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init", abstract: "Create a site; with --vault, the vault it ships to (created if new).",
        discussion: """
            A vault holds one protection group: a vault that already belongs to another site's group is refused \
            (exit 73), naming both groups. On an existing site without a vault, --vault sets its vault: the whole \
            journal ships at the next protect. A failed init leaves nothing behind.
            """)
    @OptionGroup var site: SiteOption
    @Option(help: "The vault: a directory, or lifeboat://HOST:PORT for a vault served on another machine (default: $LIFEBOAT_VAULT).") var vault: String?
    @Option(help: ArgumentHelp("The site's bundle from `lifeboat vault enroll` (with a lifeboat:// vault).", valueName: "file")) var bundle: String?

    func validate() throws {
        let remote = vault?.hasPrefix("lifeboat://") == true
        if remote, bundle == nil { throw ValidationError("a vault on the network (\(vault!)) needs --bundle FILE from `lifeboat vault enroll`") }
        if !remote, bundle != nil { throw ValidationError("--bundle goes with --vault lifeboat://HOST:PORT") }
        if remote { try SiteBundle.validateVaultAddress(vault!) }
    }

    func run() throws {
        let root = FilePath(absolutePath(try site.path()))
        if let vault, vault.hasPrefix("lifeboat://") { return try initRemote(root, address: vault, bundlePath: bundle!) }
        let vaultPath = (vault ?? vaultFromEnvironment()).map(absolutePath)
        var existing: Site?
        do { existing = try Site.open(root) } catch let e as LifeboatError where e.code == .notFound {}
        if var existing {
            guard let vaultPath else { throw LifeboatError(.alreadyExists, "a site already exists here", path: root.string) }
            if let current = existing.config.vault {
                throw LifeboatError(.alreadyExists, current == vaultPath ? "the site already ships to this vault" : "the site already ships to \(current)",
                                    path: root.string)
            }
            try withVault(vaultPath, group: existing.config.groupID) { try existing.setVault(vaultPath) }
            print("site \(root) now ships to vault \(vaultPath) (the whole journal ships at the next protect)")
            return
        }
        let group = SiteConfig.newGroupID()
        let undo = Leftovers(root)
        do {
            if let vaultPath {
                try withVault(vaultPath, group: group) { _ = try Site.initialize(at: root, vault: vaultPath, groupID: group) }
            } else {
                _ = try Site.initialize(at: root, groupID: group)
            }
        } catch {
            undo.remove(["site.json", "site.json.tmp", "disks", "journal", "state", "lock"])
            throw error
        }
        print("created site \(root) (protection group \(group))" + (vaultPath.map { ", shipping to vault \($0)" } ?? ""))
    }

    /// A site whose vault is served on another machine: the bundle is checked, the vault is
    /// reached with it (it must not hold another group), the bundle is kept in the site (0600).
    private func initRemote(_ root: FilePath, address: String, bundlePath: String) throws {
        var bundle = try SiteBundle.load(FilePath(absolutePath(bundlePath)))
        if let named = bundle.vault, named != address {
            throw LifeboatError(.invalidArgument, "the bundle is for the vault at \(named), not \(address)", path: bundlePath)
        }
        bundle.vault = address
        var existing: Site?
        do { existing = try Site.open(root) } catch let e as LifeboatError where e.code == .notFound {}
        let group = existing?.config.groupID ?? SiteConfig.newGroupID()
        let target = try RemoteVaultReplica(bundle: bundle)
        defer { target.close() }
        if let other = try target.groupID(), other != group {
            throw LifeboatError(.alreadyExists, "the vault at \(address) holds protection group \(other) for site '\(bundle.site)'; this site is group \(group) "
                                + "(one enrolled name is one protection group: enroll this site under a name of its own)")
        }
        let undo = Leftovers(root)
        do {
            var site: Site
            if var existing {
                if let current = existing.config.vault { throw LifeboatError(.alreadyExists, "the site already ships to \(current)", path: root.string) }
                try existing.setVault(address)
                site = existing
            } else {
                site = try Site.initialize(at: root, vault: address, groupID: group)
            }
            try writeFileAtomically(site.vaultBundlePath, Array(try bundle.json()))  // 0600, as every site file
        } catch {
            if existing == nil { undo.remove(["site.json", "site.json.tmp", "disks", "journal", "state", "lock"]) }
            throw error
        }
        print("created site \(root) (protection group \(group)), shipping to vault \(address) as site \(bundle.site)")
    }

    /// Runs `body` once the vault at `path` is known to take `group`, then makes the vault
    /// `group`'s. A vault that belongs to another group is refused before anything is made;
    /// a vault this call created is removed again when anything fails.
    private func withVault(_ path: String, group: String, _ body: () throws -> Void) throws {
        let existed = (try? Vault(root: FilePath(path))) != nil
        if existed, let other = try Vault(root: FilePath(path)).groupID(), other != group {
            throw Vault.belongsToAnotherGroup(other, not: group, root: FilePath(path))
        }
        let undo = Leftovers(FilePath(path))
        do {
            try body()
            try Vault(root: FilePath(path), create: true).claim(group: group)
        } catch {
            if !existed { undo.remove(["catalog.sqlite", "catalog.sqlite-journal", "bases", "layers", "incoming", "lock"]) }
            throw error
        }
    }
}

/// What a failed command made under `root`, removed again: the named entries, and `root`
/// itself when it did not exist before and is left empty.
struct Leftovers {
    let root: FilePath
    let rootExisted: Bool

    init(_ root: FilePath) {
        self.root = root
        rootExisted = FileManager.default.fileExists(atPath: root.string)
    }

    func remove(_ entries: [String]) {
        for entry in entries { try? FileManager.default.removeItem(atPath: root.appending(entry).string) }
        if !rootExisted { rmdir(root.string) }
    }
}

struct DiskCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "disk", abstract: "Create, list and remove the site's disks.", subcommands: [Create.self, List.self, Remove.self])

    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add a disk to the site (while protect is stopped).")
        @Argument(help: "Disk name; the exposed file is NAME.img.") var name: String
        @Option(help: "Size in bytes or with K/M/G/T; a multiple of 4 KiB (default: the image's size).") var size: String?
        @Option(help: "An image to take the initial content from: raw, or a fixed or dynamic VHD.") var from: String?
        @OptionGroup var site: SiteOption

        func validate() throws {
            if size == nil && from == nil { throw ValidationError("give --size, --from, or both") }
        }

        func run() throws {
            let bytes = try size.map(parseSize)
            var s = try site.open()
            if let from {
                var isDirectory: ObjCBool = false
                if FileManager.default.fileExists(atPath: from, isDirectory: &isDirectory), isDirectory.boolValue {
                    throw LifeboatError(.invalidArgument, "is a directory, not an image", path: from)
                }
            }
            // Interrupted (Ctrl-C, SIGTERM), the half-copied disk files go: the disk is not in
            // site.json until they are complete, so nothing else refers to them.
            let leftovers = s.config.disk(named: name) == nil ? s.files(ofDiskNamed: name).map(\.string) : []
            var progress: Progress?
            let disk = try InterruptCleanup.run(cleanup: { leftovers.forEach { unlink($0) } }) {
                try s.createDisk(name: name, sizeBytes: bytes, from: from.map { FilePath(absolutePath($0)) }) { done, total in
                    if progress == nil { progress = Progress(what: "copying \(from ?? "") into \(name)", total: total) }
                    progress?.update(done)
                }
            }
            progress?.finish()
            print("created disk \(disk.name) (\(diskSize(disk.sizeBytes)))" + (from.map { " from \($0)" } ?? ""))
        }
    }

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove a disk and its files from the site (while protect is stopped).",
            discussion: "Refused while the local journal holds writes to the disk or the vault holds it (the refusal names the points).")
        @Argument(help: "Disk name.") var name: String
        @OptionGroup var site: SiteOption

        func run() throws {
            var s = try site.open()
            let bundle = s.vaultBundlePath
            try s.removeDisk(name: name) { try RemoteVaultReplica(bundle: try SiteBundle.load(bundle)).diskIDs() }
            print("removed disk \(name)")
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the site's disks.")
        @Flag(help: "Print JSON.") var json = false
        @OptionGroup var site: SiteOption

        func run() throws {
            let s = try site.open()
            if json { return try printJSON(s.config.disks) }
            printTable(["NAME", "SIZE", "ID", "SOURCE"], s.config.disks.map { [$0.name, diskSize($0.sizeBytes), String($0.id), $0.source ?? "-"] })
        }
    }
}
