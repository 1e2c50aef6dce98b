import ArgumentParser
import Foundation
import LifeboatCore
import LifeboatFUSE
import LifeboatIdentity
import LifeboatVault
import LifeboatWire

#if canImport(Glibc)
import Glibc
#endif

/// `lifeboat vault serve --vault DIR --listen ADDR:PORT`: the vault on the network, in the
/// foreground, until SIGINT/SIGTERM/SIGHUP (requests in flight finish first).
struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve the vault to enrolled sites over mutual TLS (foreground; SIGTERM stops it).",
        discussion: """
            Sites reach it with the bundle `vault enroll` gave them. TLS 1.3 only; a client without a \
            certificate of this vault's CA, or whose site is not enrolled, is refused and logged. The \
            vault's upkeep (compaction, retention) runs inside the service.
            """)

    @OptionGroup var vault: VaultDirectoryOption
    @Option(help: ArgumentHelp("Where to listen: ADDRESS:PORT (e.g. 0.0.0.0:9443, [::]:9443).", valueName: "address")) var listen: String

    func validate() throws { _ = try Self.hostAndPort(listen) }

    static func hostAndPort(_ text: String) throws -> (String, Int) {
        guard let (host, port) = SiteBundle.splitHostPort(Substring(text)) else {
            throw ValidationError("--listen '\(text)': use ADDRESS:PORT with a port from 0 to 65535 (0.0.0.0 listens everywhere)")
        }
        return (host, port)
    }

    func run() throws {
        let (host, port) = try Self.hostAndPort(listen)
        let logger = makeLogger()
        let server = try VaultServer(home: try vault.openOrCreate(), logger: logger)
        try server.start(host: host, port: port)
        // A test or a supervisor learns the port chosen for :0 from this line.
        FileHandle.standardOutput.write(Data("listening on \(host):\(server.boundPort ?? port)\n".utf8))
        var set = sigset_t()
        sigemptyset(&set)
        for s in StopSignals.all { sigaddset(&set, s) }
        var signal: Int32 = 0
        while sigwait(&set, &signal) != 0 {}
        logger.notice("signal \(signal): stopping the vault service")
        server.stop()
    }
}
