"""The local cluster launcher: nodes on loopback addresses with Docker's DNS and published ports."""
