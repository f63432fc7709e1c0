import ArgumentParser
import FoundationEssentials
import Lab
import Netlink
import TextFormat

struct LabStatus: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show a lab's hosts, interfaces, addresses, routes and services (and whether they answer).")

    @Option(name: .long, help: "Lab name. Default: every lab on the machine.")
    var name: String?

    @Flag(name: .long, help: "JSON for scripts.")
    var json = false

    func run() throws {
        let labs: [String]
        if let name {
            try LabSupport.checkName(name)
            labs = [name]
        } else {
            labs = LabStore().labs()
        }
        var inspections: [LabInspection] = []
        for lab in labs {
            let (state, topology) = try LabSupport.topology(of: lab)
            inspections.append(LabInspection.inspect(lab: lab, state: state, topology: topology))
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            let data = try encoder.encode(["labs": inspections])
            print(String(decoding: data, as: UTF8.self))
            return
        }
        if inspections.isEmpty { print("no labs") }
        for (index, lab) in inspections.enumerated() {
            if index > 0 { print("") }
            print(render(lab))
        }
    }

    func render(_ lab: LabInspection) -> String {
        var lines = ["lab \(lab.name), topology: \(lab.source)\(lab.complete ? "" : " — incomplete: lab up did not finish")"]
        lines.append("")
        lines.append(row(["HOST", "NAMESPACE", "INTERFACE", "STATE", "ADDRESSES"]))
        for host in lab.hosts {
            guard host.exists else {
                lines.append(row([host.name, host.namespace, "-", "MISSING", ""]))
                continue
            }
            if let error = host.error {
                lines.append(row([host.name, host.namespace, "-", "ERROR", error]))
                continue
            }
            for (i, interface) in host.interfaces.enumerated() {
                lines.append(row([i == 0 ? host.name : "", i == 0 ? host.namespace : "", interface.name,
                                  interface.up ? "UP" : "DOWN", interface.addresses.joined(separator: " ")]))
            }
        }
        lines.append("")
        lines.append(row(["HOST", "ROUTE"], widths: [10]))
        for host in lab.hosts {
            for (i, route) in host.routes.enumerated() { lines.append(row([i == 0 ? host.name : "", route], widths: [10])) }
        }
        if !lab.services.isEmpty {
            lines.append("")
            lines.append(row(["HOST", "SERVICE", "REPLY", "ANSWERS"], widths: [10, 20, 8]))
            for service in lab.services {
                lines.append(row([service.host, service.endpoint, service.reply,
                                  service.answers ? "yes" : "no (\(service.answer))"], widths: [10, 20, 8]))
            }
        }
        if !lab.dnat.isEmpty {
            lines.append("")
            lines.append(row(["HOST", "DNAT", "BACKEND", "RULES", "ANSWERS"], widths: [10, 20, 25, 10]))
            for entry in lab.dnat {
                let answers = entry.answers.map { $0 ? "yes (\(entry.answer ?? ""))" : "no (\(entry.answer ?? ""))" } ?? "\(entry.proto): not checked"
                lines.append(row([entry.host, entry.service + (entry.proto == "tcp" ? "" : "/\(entry.proto)"),
                                  entry.backend + (entry.masquerade ? " masq" : ""), entry.error.map { "error: \($0)" } ?? (entry.installed ? "in place" : "differs"),
                                  answers], widths: [10, 20, 25, 10]))
            }
        }
        return lines.joined(separator: "\n")
    }

    func row(_ cells: [String], widths: [Int] = [10, 18, 11, 8]) -> String {
        var text = ""
        for (i, cell) in cells.enumerated() {
            text += i < widths.count ? cell.padded(to: max(widths[i], cell.count + 1)) : cell
        }
        return text
    }
}
