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
        let vault = try Vault(root: FilePath(dir + "/vault"), create: true)
        let authority = try VaultAuthority.open(vault: vault.root, create: true)
        let logger = Logger(label: "test")
        let service = VaultService(vault: vault, authority: authority, maintenance: VaultMaintenance(root: vault.root, logger: logger), logger: logger)
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
}
