import ArgumentParser
import Foundation
import LifeboatCore
import LifeboatProtect
import SystemPackage

struct ProtectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "protect",
        abstract: "Expose the site's disks as MOUNTPOINT/NAME.img and journal every write (foreground).",
        discussion: "SIGINT/SIGTERM (or fusermount3 -u) unmount, drain the journal and exit 0.")

    @Argument(help: "An existing, empty directory.") var mountpoint: String
    @OptionGroup var site: SiteOption
    @Option(help: "Seal a journal segment at this size (bytes or K/M/G).") var segmentSize = "64M"
    @Option(help: "Seal a journal segment at least this often while there are writes, in seconds.") var sealInterval = 1.0
    @Option(help: "Mark a crash-consistent point this often while there are writes, in seconds.") var pointInterval = 5.0

    func run() throws {
        let segmentBytes = try parseSize(segmentSize)
        guard segmentBytes >= 1 << 20 else { throw ValidationError("--segment-size must be at least 1M") }
        guard sealInterval > 0 else { throw ValidationError("--seal-interval must be positive") }
        guard pointInterval >= 0.2 else { throw ValidationError("--point-interval must be at least 0.2 seconds") }
        do {
            var options = ProtectionGroup.Options()
            options.segmentBytes = segmentBytes
            options.sealInterval = .milliseconds(Int64(sealInterval * 1000))
            options.pointInterval = .milliseconds(Int64(pointInterval * 1000))
            try ProtectService.run(site: try site.open(), mountpoint: absolutePath(mountpoint), options: options, logger: makeLogger())
        }
    }
}
