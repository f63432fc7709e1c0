/// `networkd-manages-foreign-rules`: systemd-networkd on the host deletes rules it did not make.
extension Doctor {
    /// Checked on the machine's own namespace only (networkd manages no other).
    func networkdFindings() throws(DoctorError) -> [Finding] {
        guard request.isHostNamespace else { return [] }
        let status = try NetworkdStatus.read(root: request.systemRoot)
        guard status.running, status.managesForeignRules else { return [] }
        let applied = !ourRules.isEmpty || state.record != nil
        return [Finding(id: FindingID.networkdForeignRules, severity: applied || request.policy != nil ? .error : .warning,
                        message: "systemd-networkd manages this node's network and deletes routing rules it did not create (ManageForeignRoutingPolicyRules is yes, the default since systemd 248) whenever it reconfigures a link: returnpath's rules\(applied ? "" : ", once applied,") would vanish",
                        objects: ["systemd-networkd ManageForeignRoutingPolicyRules=yes" + (status.setBy.map { " (\($0))" } ?? " (default)")],
                        fix: "mkdir -p /etc/systemd/networkd.conf.d && printf '[Network]\\nManageForeignRoutingPolicyRules=no\\n' > /etc/systemd/networkd.conf.d/90-returnpath.conf && systemctl restart systemd-networkd")]
    }
}
