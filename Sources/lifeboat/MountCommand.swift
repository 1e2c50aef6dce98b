import ArgumentParser
import Foundation
import LifeboatCore
import LifeboatPointView


struct MountCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mount",
        abstract: "Serve a recovery point at MOUNTPOINT (one file per disk), read-only or with a throwaway overlay (foreground).",
        discussion: "SIGINT/SIGTERM or fusermount3 -u unmount; the overlay is deleted. The point is kept from pruning while mounted.")

    @Argument(help: "An existing, empty directory.") var mountpoint: String
    @OptionGroup var vault: VaultOption
    @Option(help: "latest, latest-app, a point id, lsn:N or @TIME.") var point: String
    @Option(help: "Take writes into a sparse copy-on-write overlay in this directory, thrown away at unmount.") var overlay: String?
    @Option(help: "raw (NAME.img) or vhd (NAME.vhd, a fixed VHD).") var format = "raw"

    func validate() throws {
        guard format == "raw" || format == "vhd" else { throw ValidationError("unknown format '\(format)': use raw or vhd") }
    }

    func run() throws {
        try MountService.requireRoot()
        var options = MountService.Options()
        options.vhd = format == "vhd"
        options.overlay = overlay
        try MountService.run(vault: try vault.open(), selector: point, mountpoint: absolutePath(mountpoint), options: options, logger: makeLogger())
    }
}
