import ArgumentParser
import Foundation
import LifeboatCore
import LifeboatQuiesce

/// `lifeboat guest-agent freeze|thaw|status --socket SOCKET`: the qemu guest agent of a virtual
/// machine, by hand. `checkpoint --guest-agent` does the freeze and thaw itself; its thaw guard
/// runs `guest-agent thaw` if lifeboat is killed while the guest is frozen.
struct GuestAgentCommand: ParsableCommand {
    enum Action: String, ExpressibleByArgument, CaseIterable { case freeze, thaw, status }

    static let configuration = CommandConfiguration(
        commandName: "guest-agent",
        abstract: "Freeze, thaw or ask a virtual machine's filesystems through its qemu guest agent.",
        discussion: """
            SOCKET is the host end of the guest agent's channel: qemu's \
            -chardev socket,path=SOCKET,server=on,wait=off,id=qga0 \
            -device virtio-serial -device virtserialport,chardev=qga0,name=org.qemu.guest_agent.0
            """)

    @Argument(help: "freeze, thaw or status.") var action: Action
    @Option(help: ArgumentHelp("The guest agent's socket.", valueName: "socket")) var socket: String
    @Option(help: "How long the guest may take to answer (e.g. 10s).") var timeout = "10s"

    func validate() throws { _ = try parseDuration(timeout, what: "timeout") }

    func run() throws {
        let agent = GuestAgent(socket: absolutePath(socket))
        let deadline = ContinuousClock.now + .milliseconds(Int64(try parseDuration(timeout, what: "timeout") * 1000))
        switch action {
        case .freeze:
            if let failure = agent.freeze(deadline: deadline) { throw LifeboatError(.io, failure) }
            print("frozen")
        case .thaw:
            if let failure = agent.thaw(deadline: deadline) { throw LifeboatError(.io, failure) }
            print("thawed")
        case .status:
            print(try agent.status(deadline: deadline))
        }
    }
}
