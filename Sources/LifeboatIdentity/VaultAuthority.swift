import Crypto
import Foundation
import LifeboatCore
import SwiftASN1
import SystemPackage
import X509

#if canImport(Glibc)
import Glibc
#endif

/// The vault's own certificate authority (decision 0010, "Identity"): it signs one client
/// certificate per enrolled site, and the vault service will trust only certificates it signed.
/// Kept in `VAULT/tls/`: `ca.pem` (the certificate), `ca.key` (its P-256 key, 0600), and
/// `sites/NAME.pem` (each certificate issued, the record of who was enrolled).
public struct VaultAuthority: Sendable {
    public let directory: FilePath
    public let certificate: Certificate
    private let key: P256.Signing.PrivateKey

    public static let caValidity: TimeInterval = 10 * 365 * 86400

    /// Opens the vault's authority, making it at the first call (`create`).
    public static func open(vault: FilePath, create: Bool) throws -> VaultAuthority {
        let dir = vault.appending("tls")
        let certPath = dir.appending("ca.pem"), keyPath = dir.appending("ca.key")
        if FileManager.default.fileExists(atPath: certPath.string) {
            let certificate: Certificate
            let key: P256.Signing.PrivateKey
            do { certificate = try Certificate(pemEncoded: try String(contentsOfFile: certPath.string, encoding: .utf8)) } catch {
                throw LifeboatError(.corrupt, "the vault's CA certificate does not parse: \(error)", path: certPath.string)
            }
            do { key = try P256.Signing.PrivateKey(pemRepresentation: try String(contentsOfFile: keyPath.string, encoding: .utf8)) } catch {
                throw LifeboatError(.corrupt, "the vault's CA key does not parse: \(error)", path: keyPath.string)
            }
            guard certificate.publicKey == Certificate.PublicKey(key.publicKey) else {
                throw LifeboatError(.corrupt, "the vault's CA key is not the key of its certificate (ca.pem)", path: keyPath.string)
            }
            return VaultAuthority(directory: dir, certificate: certificate, key: key)
        }
        guard create else { throw LifeboatError(.notFound, "the vault has no certificate authority yet (`lifeboat vault enroll` makes it)", path: dir.string) }
        guard FileManager.default.fileExists(atPath: vault.string) else {
            throw LifeboatError(.notFound, "no vault here", path: vault.string)
        }
        try PrivateFiles.makeDirectory(dir.appending("sites"))
        let key = P256.Signing.PrivateKey()
        // A name of its own per vault: a certificate names its issuer, and two vaults' CAs must
        // not look alike in logs and in openssl's output.
        let id = (0..<4).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
        let name = try DistinguishedName {
            CommonName("Lifeboat vault CA \(id)")
            OrganizationName("Lifeboat")
        }
        let now = Date()
        let certificate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: Certificate.PublicKey(key.publicKey),
            notValidBefore: now.addingTimeInterval(-300), notValidAfter: now.addingTimeInterval(caValidity),
            issuer: name, subject: name, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
            },
            issuerPrivateKey: Certificate.PrivateKey(key))
        // The key first: a crash between the two leaves no certificate without its key.
        try writeFileAtomically(keyPath, Array(key.pemRepresentation.utf8))
        try writeFileAtomically(certPath, Array(try certificate.serializeAsPEM().pemString.utf8))
        return VaultAuthority(directory: dir, certificate: certificate, key: key)
    }

    /// The vault service's own certificate and key (PEM), made at the first call: issued by this
    /// CA for server authentication, with the URI `lifeboat:vault` that sites check. Kept in
    /// `server.pem` and `server.key` (0600).
    public func serverIdentity() throws -> (certificate: String, key: String) {
        let certPath = directory.appending("server.pem"), keyPath = directory.appending("server.key")
        if let cert = try? String(contentsOfFile: certPath.string, encoding: .utf8), let key = try? String(contentsOfFile: keyPath.string, encoding: .utf8) {
            return (cert, key)
        }
        let serverKey = P256.Signing.PrivateKey()
        let now = Date()
        let certificate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: Certificate.PublicKey(serverKey.publicKey),
            notValidBefore: now.addingTimeInterval(-300), notValidAfter: now.addingTimeInterval(Self.caValidity),
            issuer: self.certificate.subject, subject: try DistinguishedName { CommonName("Lifeboat vault"); OrganizationName("Lifeboat") },
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([.serverAuth])
                SubjectAlternativeNames([.uniformResourceIdentifier(SiteBundle.vaultURI)])
            },
            issuerPrivateKey: Certificate.PrivateKey(key))
        let pem = try certificate.serializeAsPEM().pemString
        try writeFileAtomically(keyPath, Array(serverKey.pemRepresentation.utf8))
        try writeFileAtomically(certPath, Array(pem.utf8))
        return (pem, serverKey.pemRepresentation)
    }

    /// Whether `certificate` is the one on record for `site` (enrolled, not since removed).
    public func isEnrolled(site: String, certificatePEM: String) -> Bool {
        guard let onRecord = try? String(contentsOfFile: issued(site: site).string, encoding: .utf8),
              let a = try? Certificate(pemEncoded: onRecord), let b = try? Certificate(pemEncoded: certificatePEM) else { return false }
        return a == b
    }

    /// The certificate issued to `site`, if it was enrolled.
    public func issued(site: String) -> FilePath { directory.appending("sites").appending(site + ".pem") }

    /// Issues a client certificate for a site: CN = the site's name, a `lifeboat:site:NAME` URI,
    /// client authentication only, valid `days`. A name enrolled before is refused (its
    /// certificate is on record): names identify sites.
    public func enroll(site: String, vaultAddress: String?, days: Int) throws -> SiteBundle {
        try SiteBundle.validateSiteName(site)
        guard (1...3650).contains(days) else { throw LifeboatError(.invalidArgument, "--days \(days): a certificate is valid 1 to 3650 days") }
        let record = issued(site: site)
        guard !FileManager.default.fileExists(atPath: record.string) else {
            throw LifeboatError(.alreadyExists, "site '\(site)' is already enrolled (its certificate: \(record))", path: record.string)
        }
        let siteKey = P256.Signing.PrivateKey()
        let now = Date()
        let certificate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: Certificate.PublicKey(siteKey.publicKey),
            notValidBefore: now.addingTimeInterval(-300), notValidAfter: now.addingTimeInterval(TimeInterval(days) * 86400),
            issuer: self.certificate.subject, subject: try DistinguishedName { CommonName(site); OrganizationName("Lifeboat site") },
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([.clientAuth])
                SubjectAlternativeNames([.uniformResourceIdentifier(SiteBundle.siteURI(site))])
            },
            issuerPrivateKey: Certificate.PrivateKey(key))
        let certificatePEM = try certificate.serializeAsPEM().pemString
        // O_EXCL: two enrollments of one name at once cannot both win.
        try createRecord(record, certificatePEM)
        return SiteBundle(site: site, vault: vaultAddress, ca: try self.certificate.serializeAsPEM().pemString,
                          certificate: certificatePEM, key: siteKey.pemRepresentation)
    }
}

/// Creates `path` (0600) with `text`, synced; refused if it exists (O_EXCL).
func createRecord(_ path: FilePath, _ text: String) throws {
    let fd: FileDescriptor
    do { fd = try FileDescriptor.open(path, .writeOnly, options: [.create, .exclusiveCreate, .closeOnExec], permissions: PrivateFiles.fileMode) } catch let e as Errno {
        if e == .fileExists { throw LifeboatError(.alreadyExists, "already exists", path: path.string) }
        throw LifeboatError.system(e, "cannot create the file", path: path.string)
    }
    do {
        try fd.closeAfter {
            _ = try fd.writeAll(Array(text.utf8))
            try fd.fullSync()
        }
    } catch let e as Errno {
        throw LifeboatError.system(e, "cannot write the file", path: path.string)
    }
    try syncDirectory(path.removingLastComponent())
}
