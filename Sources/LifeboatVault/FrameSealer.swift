import Crypto
import Foundation
import LifeboatCore

/// Seals a layer's zstd frames with AES-256-GCM (Docs/formats/vault.md, "Encryption at rest"):
///
/// ```
/// sealed frame = salt (16 random bytes) ‖ ciphertext (the zstd frame's length) ‖ tag (16)
/// frame key    = HKDF-SHA256(vault key, salt: salt, info: "lifeboat layer frame v1"), 32 bytes
/// nonce        = 12 zero bytes (each frame key seals one frame)
/// AAD          = group id (16) ‖ disk u32 ‖ first block of the record u64 ‖ LSN u64 (little-endian)
/// ```
///
/// A key per frame, from 128 random bits: AES-GCM's limit of 2^32 random nonces per key never
/// comes near, whatever a vault ingests in its life. The AAD ties a frame to the record it came
/// from, not to where it lies, so compaction copies sealed frames unchanged, and a frame moved
/// to another entry, layer or group fails to open.
public struct FrameSealer: Sendable {
    public static let overhead = 32
    static let info = Array("lifeboat layer frame v1".utf8)

    let key: VaultKey
    let groupID: [UInt8]
    /// Where salts come from: the system's random generator; a fixed sequence for the golden fixture.
    let salt: @Sendable () -> [UInt8]

    public init(key: VaultKey, groupID: [UInt8], salt: @escaping @Sendable () -> [UInt8] = FrameSealer.randomSalt) {
        self.key = key
        self.groupID = groupID
        self.salt = salt
    }

    public static func randomSalt() -> [UInt8] {
        var g = SystemRandomNumberGenerator()
        return (0..<16).map { _ in UInt8.random(in: 0...255, using: &g) }
    }

    private func aad(disk: DiskID, firstBlock: UInt64, lsn: LSN) -> [UInt8] {
        var w = ByteWriter()
        w.put(groupID)
        w.put(disk.rawValue)
        w.put(firstBlock)
        w.put(lsn.rawValue)
        return w.bytes
    }

    private static let zeroNonce = try! AES.GCM.Nonce(data: [UInt8](repeating: 0, count: 12))

    /// Appends `frame` sealed to `out`; returns the sealed length (the frame's + `overhead`).
    public func seal(_ frame: UnsafeRawBufferPointer, disk: DiskID, firstBlock: UInt64, lsn: LSN, appendingTo out: inout [UInt8]) throws -> Int {
        let salt = self.salt()
        let box: AES.GCM.SealedBox
        do {
            box = try AES.GCM.seal(frame, using: key.derive(salt: salt, info: Self.info), nonce: Self.zeroNonce,
                                   authenticating: aad(disk: disk, firstBlock: firstBlock, lsn: lsn))
        } catch {
            throw LifeboatError(.internalError, "cannot encrypt a layer frame", cause: error)
        }
        out.append(contentsOf: salt)
        out.append(contentsOf: box.ciphertext)
        out.append(contentsOf: box.tag)
        return Self.overhead + frame.count
    }

    /// The zstd frame inside `sealed`, or nil when it fails authentication (damaged, moved,
    /// or sealed with another key).
    public func open(_ sealed: UnsafeRawBufferPointer, disk: DiskID, firstBlock: UInt64, lsn: LSN) -> Data? {
        guard sealed.count >= Self.overhead else { return nil }
        let salt = Array(sealed[0..<16])
        let body = UnsafeRawBufferPointer(rebasing: sealed[16..<(sealed.count - 16)])
        let tag = UnsafeRawBufferPointer(rebasing: sealed[(sealed.count - 16)...])
        guard let box = try? AES.GCM.SealedBox(nonce: Self.zeroNonce, ciphertext: body, tag: tag) else { return nil }
        return try? AES.GCM.open(box, using: key.derive(salt: salt, info: Self.info), authenticating: aad(disk: disk, firstBlock: firstBlock, lsn: lsn))
    }
}
