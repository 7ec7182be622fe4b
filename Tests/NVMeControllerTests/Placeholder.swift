// Keeps the NVMeControllerTests target buildable on this branch until the
// nvme-tests branch (which adds the real tests here) is merged.
import Testing
