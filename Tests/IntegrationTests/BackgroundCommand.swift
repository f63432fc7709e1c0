import Foundation
import Synchronization

/// A program running while the test does something else (a passive probe listening while clients connect): its
/// standard error is readable as it comes, its output once it ends.
final class BackgroundCommand: @unchecked Sendable {
    private let process = Process()
    private let errorText = Mutex("")
    private let outputData = Mutex(Data())
    private let errorsDone = DispatchSemaphore(value: 0)
    private let outputDone = DispatchSemaphore(value: 0)

    init(_ executable: String, _ arguments: [String]) throws {
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        Thread { [self] in
            let handle = err.fileHandleForReading
            while true {
                let chunk = handle.availableData
                if chunk.isEmpty { break }
                errorText.withLock { $0 += String(decoding: chunk, as: UTF8.self) }
            }
            errorsDone.signal()
        }.start()
        Thread { [self] in
            let data = out.fileHandleForReading.readDataToEndOfFile()
            outputData.withLock { $0 = data }
            outputDone.signal()
        }.start()
    }

    var errors: String { errorText.withLock { $0 } }

    /// Waits (up to `timeout` seconds) until standard error contains `text`; false when it ended or timed out first.
    func waitForError(containing text: String, timeout: Double = 15) throws -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if errors.contains(text) { return true }
            if !process.isRunning { return errors.contains(text) }
            usleep(10_000)
        }
        return false
    }

    /// Waits for the end; its status, output and errors.
    func wait() -> CLIResult {
        outputDone.wait()
        errorsDone.wait()
        process.waitUntilExit()
        return CLIResult(status: process.terminationStatus, output: String(decoding: outputData.withLock { $0 }, as: UTF8.self),
                         errors: errors)
    }

    deinit {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
    }
}

/// A generated lab (as `returnpath bench lab` makes them): host "core" with one veth to each client h1…hN, each on
/// its own /30 with a default route via the core; the core serves 192.168.0.1:80 on lo.
func starTopology(clients: Int, name: String = "star") -> String {
    func address(_ i: Int, _ host: Int) -> String { "10.\(100 + i / 64).\((i % 64) * 4 / 256).\((i % 64) * 4 % 256 + host)" }
    var text = "name: \(name)\nnetworks:\n"
    for i in 1...clients { text += "  n\(i): {subnet: \(address(i, 0))/30}\n" }
    text += "hosts:\n  core:\n    sysctls: {net.ipv4.ip_forward: 1}\n    interfaces:\n      lo: {addresses: [192.168.0.1/32]}\n"
    for i in 1...clients { text += "      e\(i): {network: n\(i), address: \(address(i, 1))}\n" }
    text += "    services:\n      - {address: 192.168.0.1, port: 80, reply: core}\n"
    for i in 1...clients {
        text += "  h\(i):\n    role: client\n    interfaces:\n      eth0: {network: n\(i), address: \(address(i, 2))}\n"
        text += "    routes:\n      - {to: default, via: \(address(i, 1))}\n"
    }
    return text
}
