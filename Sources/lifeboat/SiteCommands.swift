import ArgumentParser
import Foundation
import LifeboatCore
import LifeboatProtect
import LifeboatVault
import SystemPackage

struct InitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init", abstract: "Create a site; with --vault, the vault it ships to (created if new).",
        discussion: "On an existing site, --vault sets its vault: the whole journal ships at the next protect.")
    @OptionGroup var site: SiteOption
    @Option(help: "The vault directory (default: $LIFEBOAT_VAULT).") var vault: String?

    func run() throws {
        let path = try site.path()
        let vaultPath = vault ?? ProcessInfo.processInfo.environment["LIFEBOAT_VAULT"].flatMap { $0.isEmpty ? nil : $0 }
        do {
            if let vaultPath { _ = try Vault(root: FilePath(vaultPath), create: true) }
            if var existing = try? Site.open(FilePath(path)), let vaultPath {
                try existing.setVault(vaultPath)
                print("site \(path) now ships to vault \(vaultPath)")
                return
            }
            let created = try Site.initialize(at: FilePath(path), vault: vaultPath)
            print("created site \(path) (protection group \(created.config.groupID))" + (vaultPath.map { ", shipping to vault \($0)" } ?? ""))
        }
    }
}

struct DiskCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "disk", abstract: "Create and list the site's disks.", subcommands: [Create.self, List.self])

    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add a disk to the site (while protect is stopped).")
        @Argument(help: "Disk name; the exposed file is NAME.img.") var name: String
        @Option(help: "Size in bytes or with K/M/G/T; a multiple of 4 KiB (default: the image's size).") var size: String?
        @Option(help: "A raw image to take the initial content from.") var from: String?
        @OptionGroup var site: SiteOption

        func validate() throws {
            if size == nil && from == nil { throw ValidationError("give --size, --from, or both") }
        }

        func run() throws {
            let bytes = try size.map(parseSize)
            do {
                var s = try site.open()
                let disk = try s.createDisk(name: name, sizeBytes: bytes, from: from.map { FilePath($0) })
                print("created disk \(disk.name) (\(humanBytes(disk.sizeBytes)))" + (from.map { " from \($0)" } ?? ""))
            }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the site's disks.")
        @Flag(help: "Print JSON.") var json = false
        @OptionGroup var site: SiteOption

        func run() throws {
            do {
                let s = try site.open()
                if json { return try printJSON(s.config.disks) }
                print(pad("NAME", 20) + pad("SIZE", 12) + pad("ID", 5) + "SOURCE")
                for d in s.config.disks {
                    print(pad(d.name, 20) + pad(humanBytes(d.sizeBytes), 12) + pad(String(d.id), 5) + (d.source ?? "-"))
                }
            }
        }
    }
}
