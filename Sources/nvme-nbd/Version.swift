/// The version `nvme-nbd --version` (`-V`) prints.
enum NVMeNBDVersion {
    static let string = "0.13.0"
}
