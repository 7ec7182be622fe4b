print("nvme-nbd")
