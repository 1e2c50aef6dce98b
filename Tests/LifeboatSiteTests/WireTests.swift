import Foundation
import LifeboatCore
import LifeboatIdentity
import LifeboatTestSupport
import LifeboatVault
import LifeboatWireFormat
import Logging
import SystemPackage
import Testing

@testable import LifeboatWire

/// The wire's frames and the vault service's refusals, without a network.
@Suite struct WireTests {
    @Test func framesRoundTripAndBadLengthsAreRefused() throws {
        let frame = WireFrame(header: Array(#"{"op":"pointAt","lsn":42,"note":"x"}"#.utf8), body: [1, 2, 3])
        let bytes = frame.encoded()
        #expect(Array(bytes.prefix(8)) == [0, 0, 0, 43, 0, 0, 0, 36], "4 + 36 + 3 bytes follow; the header is 36")
        #expect(try WireFrame.decode(bytes) == frame)
        #expect(throws: LifeboatError.self) { try WireFrame.decode(Array(bytes.dropLast())) }
        var lying = bytes
        lying[7] = 200  // a header longer than the frame
        let e = #expect(throws: LifeboatError.self) { try WireFrame.decode(lying) }
        #expect(e?.message.contains("header length 200 does not fit") == true)
    }

    @Test func theServiceRefusesUnknownOpsAndGroupsThatAreNotIds() throws {
        let dir = try testDirectory("wire-service")
        let service = try makeService(dir + "/vault")
        let unknown = #expect(throws: LifeboatError.self) { try service.handle(WireRequest(op: "erase"), body: [], site: "s") }
        #expect(unknown?.message.contains("unknown op 'erase'") == true)
        var escape = WireRequest(op: "addDiskBegin")
        escape.group = "../../../../tmp/owned"
        escape.disk = 0
        escape.sizeBytes = 1 << 20
        let refused = #expect(throws: LifeboatError.self) { try service.handle(escape, body: [], site: "s") }
        #expect(refused?.message.contains("is not a protection group id") == true)
        #expect(!FileManager.default.fileExists(atPath: "/tmp/owned-0.part"))
        var missing = WireRequest(op: "pointAt")
        missing.lsn = nil
        let noLSN = #expect(throws: LifeboatError.self) { try service.handle(missing, body: [], site: "s") }
        #expect(noLSN?.message.contains("field 'lsn' is missing") == true)
    }

    @Test func eachSiteReachesOnlyItsOwnGroup() throws {
        let dir = try testDirectory("wire-sites")
        let service = try makeService(dir + "/vault")
        let groupA = String(repeating: "a", count: 32), groupB = String(repeating: "b", count: 32)
        try addEmptyDisk(service, site: "alpha", group: groupA, name: "data")
        try addEmptyDisk(service, site: "beta", group: groupB, name: "logs")
        let home = try VaultHome(root: FilePath(dir + "/vault"))
        #expect(try home.siteNames() == ["alpha", "beta"])
        #expect(try home.siteGroup("alpha").disks().map(\.name) == ["data"])
        #expect(try home.siteGroup("beta").disks().map(\.name) == ["logs"])
        // Each site's state is its own group's, whatever group it names.
        #expect(try service.handle(WireRequest(op: "state"), body: [], site: "beta").0.group == groupB)
        // Beta naming alpha's group is refused: its requests only ever open sites/beta.
        let crossed = #expect(throws: LifeboatError.self) { try addEmptyDisk(service, site: "beta", group: groupA, name: "stolen") }
        #expect(crossed?.message.contains("belongs to protection group \(groupB)") == true)
        #expect(try home.siteGroup("alpha").disks().map(\.name) == ["data"])
        // Readers: two groups need --site; one named is read; an unknown one is named with the known.
        let ambiguous = #expect(throws: LifeboatError.self) { try home.group(site: nil) }
        #expect(ambiguous?.message.contains("2 sites (alpha, beta): name one with --site NAME") == true)
        #expect(try home.group(site: "beta").groupID() == groupB)
        let unknown = #expect(throws: LifeboatError.self) { try home.group(site: "gamma") }
        #expect(unknown?.message.contains("no group of site 'gamma' (it has: alpha, beta)") == true)
        #expect(throws: LifeboatError.self) { try home.group(site: "../alpha") }
    }

    @Test func aLocalVaultIsNotServed() throws {
        let dir = try testDirectory("wire-local")
        _ = try Vault(root: FilePath(dir + "/vault"), create: true)
        let e = #expect(throws: LifeboatError.self) { try VaultServer(home: try VaultHome(root: FilePath(dir + "/vault")), logger: Logger(label: "test")) }
        #expect(e?.message.contains("holds a site's own group at its root") == true)
    }

    private func makeService(_ path: String) throws -> VaultService {
        let home = try VaultHome(root: FilePath(path), create: true)
        return VaultService(home: home, authority: try VaultAuthority.open(vault: home.root, create: true), logger: Logger(label: "test"))
    }

    /// The initial replication of an all-zero 1 MiB disk (no chunk: holes are not sent).
    private func addEmptyDisk(_ service: VaultService, site: String, group: String, name: String) throws {
        var begin = WireRequest(op: "addDiskBegin")
        begin.group = group
        begin.disk = 0
        begin.sizeBytes = 1 << 20
        _ = try service.handle(begin, body: [], site: site)
        var end = begin
        end.op = "addDiskEnd"
        end.name = name
        _ = try service.handle(end, body: [], site: site)
    }
}
