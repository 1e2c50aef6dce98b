import Foundation
import LifeboatCore
import LifeboatTestSupport
import SystemPackage
import Testing

@testable import LifeboatIdentity

#if canImport(Glibc)
import Glibc
#endif

private let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures").path

/// `vault enroll` and site bundles, with openssl as the outside judge of the certificates.
@Suite(.timeLimit(.minutes(2)))
struct EnrollTests {
    /// A new vault and a bundle enrolled into it through the CLI (stdout redirected to a file).
    private func enrolled(_ site: String, in dir: String) throws -> (bundlePath: String, result: CommandResult) {
        let bundle = dir + "/\(site).bundle"
        let r = try run(["/bin/sh", "-c", "umask 022; \"$0\" vault enroll --vault \"$1\" --site-name \"$2\" --address lifeboat://10.99.0.1:9443 > \"$3\"",
                         lifeboatBinary, dir + "/vault", site, bundle])
        return (bundle, r)
    }

    /// A vault directory to enroll into (a served vault: no group of its own).
    private func makeVault(_ dir: String) throws {
        try FileManager.default.createDirectory(atPath: dir + "/vault", withIntermediateDirectories: true)
    }

    @Test(.enabled(if: access("/usr/bin/openssl", X_OK) == 0, "needs openssl (Harness/setup.sh installs it)"))
    func anEnrolledSitesCertificateIsOneOpenSSLTrustsForClientAuthentication() throws {
        let dir = try testDirectory("enroll")
        try makeVault(dir)
        let (path, r) = try enrolled("site-a", in: dir)
        try check(r)
        var st = stat()
        #expect(stat(path, &st) == 0 && st.st_mode & 0o777 == 0o600, "the bundle is private though the umask is 022")
        let bundle = try SiteBundle.load(FilePath(path))
        #expect(bundle.site == "site-a" && bundle.vault == "lifeboat://10.99.0.1:9443" && bundle.version == 1)
        for (name, pem) in [("ca.pem", bundle.ca), ("cert.pem", bundle.certificate), ("key.pem", bundle.key)] {
            try pem.write(toFile: dir + "/" + name, atomically: true, encoding: .utf8)
        }
        let verify = try run(["/usr/bin/openssl", "verify", "-CAfile", dir + "/ca.pem", "-purpose", "sslclient", dir + "/cert.pem"])
        #expect(verify.status == 0 && verify.stdout.contains(": OK"), "\(verify.stdout)\(verify.stderr)")
        let server = try run(["/usr/bin/openssl", "verify", "-CAfile", dir + "/ca.pem", "-purpose", "sslserver", dir + "/cert.pem"])
        #expect(server.status != 0, "a site's certificate is for client authentication only")
        let text = try run(["/usr/bin/openssl", "x509", "-in", dir + "/cert.pem", "-noout", "-subject", "-ext", "subjectAltName"])
        #expect(text.stdout.contains("CN = site-a") && text.stdout.contains("URI:lifeboat:site:site-a"), "\(text.stdout)")
        let fromKey = try run(["/usr/bin/openssl", "pkey", "-in", dir + "/key.pem", "-pubout"])
        let fromCert = try run(["/usr/bin/openssl", "x509", "-in", dir + "/cert.pem", "-noout", "-pubkey"])
        #expect(!fromKey.stdout.isEmpty && fromKey.stdout == fromCert.stdout, "the key is the certificate's")
        // The CA's key stays in the vault, private; the issued certificate is on record.
        #expect(stat(dir + "/vault/tls/ca.key", &st) == 0 && st.st_mode & 0o777 == 0o600)
        #expect(try String(contentsOfFile: dir + "/vault/tls/sites/site-a.pem", encoding: .utf8) == bundle.certificate)

        // A second site: the same CA, another key.
        let (second, r2) = try enrolled("site-b", in: dir)
        try check(r2)
        let b = try SiteBundle.load(FilePath(second))
        #expect(b.ca == bundle.ca && b.key != bundle.key)
    }

    @Test func aNameEnrolledTwiceOrABadNameOrAddressIsRefused() throws {
        let dir = try testDirectory("enroll-bad")
        try makeVault(dir)
        try check(try enrolled("site-a", in: dir).result)
        let again = try enrolled("site-a", in: dir).result
        #expect(again.status == 73 && again.stderr.contains("site 'site-a' is already enrolled"), "\(again.stderr)")
        for (args, message) in [
            (["--site-name", "../x"], "'../x' is not a site name"),
            (["--site-name=-a"], "'-a' is not a site name"),
            (["--site-name", "ok", "--address", "http://h:1"], "is not a vault address: use lifeboat://HOST:PORT"),
            (["--site-name", "ok", "--address", "lifeboat://h:70000"], "needs a port from 1 to 65535"),
            (["--site-name", "ok", "--days", "0"], "--days 0"),
        ] {
            let r = try lifeboat(["vault", "enroll", "--vault", dir + "/vault"] + args)
            #expect(r.status == 64 && r.stderr.contains(message), "\(args): \(r.stderr)")
        }
        // A new vault directory is made (enroll comes first on a new vault host); a file is not one.
        let fresh = try run(["/bin/sh", "-c", "\"$0\" vault enroll --vault \"$1\" --site-name x > /dev/null", lifeboatBinary, dir + "/new-vault"])
        #expect(fresh.status == 0 && FileManager.default.fileExists(atPath: dir + "/new-vault/tls/ca.pem"), "\(fresh.stderr)")
        try "x".write(toFile: dir + "/a-file", atomically: true, encoding: .utf8)
        let notVault = try run(["/bin/sh", "-c", "\"$0\" vault enroll --vault \"$1\" --site-name x > /dev/null", lifeboatBinary, dir + "/a-file"])
        #expect(notVault.status != 0 && notVault.stderr.contains(dir + "/a-file"), "\(notVault.stderr)")
    }

    /// The committed fixture (Docs/formats/bundle.md's worked example) and its damaged variants:
    /// each refusal names the field.
    @Test func aBundleIsCheckedFieldByField() throws {
        let path = fixtures + "/site-v1.bundle"
        let good = try SiteBundle.load(FilePath(path))
        #expect(good.site == "branch-office" && good.vault == "lifeboat://vault.example:9443")
        let dir = try testDirectory("bundles")
        try makeVault(dir)
        let other = try VaultAuthority.open(vault: FilePath(dir + "/vault"), create: true).enroll(site: "other", vaultAddress: nil, days: 1)
        func refused(_ change: (inout [String: Any]) -> Void) throws -> String {
            var object = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as! [String: Any]
            change(&object)
            let data = try JSONSerialization.data(withJSONObject: object)
            do {
                _ = try SiteBundle.parse(Array(data), path: "x.bundle")
                return "accepted"
            } catch let e as LifeboatError {
                return e.message
            }
        }
        #expect(try refused { $0["version"] = 2 }.contains("field 'version': bundle version 2"))
        #expect(try refused { $0["key"] = nil }.contains("field 'key' is missing"))
        #expect(try refused { $0["site"] = "other/../x" }.contains("field 'site'"))
        #expect(try refused { $0["vault"] = "tcp://x:1" }.contains("field 'vault'"))
        #expect(try refused { $0["certificate"] = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n" }.contains("field 'certificate': not a PEM certificate"))
        #expect(try refused { $0["ca"] = other.ca }.contains("field 'certificate': not issued by the bundle's CA"))
        #expect(try refused { $0["site"] = "branch-office-2" }.contains("field 'certificate': issued to another site"))
        #expect(try refused { $0["key"] = other.key }.contains("field 'key': not the key of the bundle's certificate"))
        #expect(try refused { $0["certificate"] = other.certificate; $0["ca"] = other.ca }.contains("issued to another site"))
        let notJSON = #expect(throws: LifeboatError.self) { try SiteBundle.parse(Array("hello".utf8), path: "x.bundle") }
        #expect(notJSON?.message.contains("not a site bundle") == true)
    }
}
