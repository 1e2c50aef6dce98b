import Crypto
import Foundation
import LifeboatCore
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The key a served vault's data is encrypted with at rest (Docs/formats/vault.md, "Encryption
/// at rest"; decision 0011). Kept in a file outside the vault directory — whoever copies the
/// vault does not get it — as 64 hex digits and a newline, mode 0600.
///
/// The key is never used directly: each layer frame gets a key of its own and each disk's base
/// another (HKDF-SHA256), so AES-GCM's limits apply per frame and per base, not per vault.
public struct VaultKey: Sendable {
    let material: SymmetricKey
    /// What the vault records to know its key without holding it: 16 hex digits of
    /// HMAC-SHA256(key, "lifeboat vault key id v1").
    public let id: String
    /// The file it was read from (a drill's worker process reads it again from there).
    public let path: FilePath

    init(material: SymmetricKey, path: FilePath) {
        self.material = material
        self.path = path
        let mac = HMAC<SHA256>.authenticationCode(for: Array("lifeboat vault key id v1".utf8), using: material)
        id = Hex.string(Array(mac.prefix(8)))
    }

    /// Reads the key file at `path`. A missing file, a file anyone but its owner can read, or
    /// content that is not 64 hex digits is an error naming the file and what is wrong.
    public static func load(_ path: FilePath) throws -> VaultKey {
        var st = stat()
        guard stat(path.string, &st) == 0 else {
            let e = Errno(rawValue: errno)
            throw e == .noSuchFileOrDirectory ? LifeboatError(.notFound, "no vault key file here", path: path.string)
                : LifeboatError.system(e, "cannot read the vault key", path: path.string)
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw LifeboatError(.invalidArgument, "the vault key is not a regular file", path: path.string) }
        guard st.st_mode & 0o077 == 0 else {
            throw LifeboatError(.permission, "the vault key file is open to others (mode \(String(st.st_mode & 0o777, radix: 8))): chmod 600 it", path: path.string)
        }
        let text: String
        do { text = try String(contentsOfFile: path.string, encoding: .utf8) } catch {
            throw LifeboatError(.invalidArgument, "the vault key file is not text (64 hex digits)", path: path.string)
        }
        let digits = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard digits.count == 64, let bytes = Hex.bytesIfValid(digits) else {
            throw LifeboatError(.invalidArgument, "the vault key file must hold 64 hex digits (a 256-bit key); it holds \(digits.count) characters",
                                path: path.string)
        }
        return VaultKey(material: SymmetricKey(data: bytes), path: path)
    }

    /// Makes a new random key in a new file at `path` (mode 0600); refuses to overwrite one —
    /// a lost key is a lost vault.
    @discardableResult
    public static func create(at path: FilePath) throws -> VaultKey {
        let key = SymmetricKey(size: .bits256)
        let text = key.withUnsafeBytes { Hex.string(Array($0)) } + "\n"
        let fd: FileDescriptor
        do { fd = try FileDescriptor.open(path, .writeOnly, options: [.create, .exclusiveCreate, .closeOnExec], permissions: PrivateFiles.fileMode) } catch {
            throw LifeboatError.wrapping(error, "cannot create the vault key file", path: path.string)
        }
        do {
            defer { try? fd.close() }
            _ = try fd.writeAll(Array(text.utf8))
            try fd.fullSync()
        } catch {
            unlink(path.string)
            throw LifeboatError.wrapping(error, "cannot write the vault key file", path: path.string)
        }
        return VaultKey(material: key, path: path)
    }

    /// A key derived from this one for one purpose (HKDF-SHA256).
    func derive(salt: [UInt8], info: [UInt8]) -> SymmetricKey {
        HKDF<SHA256>.deriveKey(inputKeyMaterial: material, salt: salt, info: info, outputByteCount: 32)
    }
}
