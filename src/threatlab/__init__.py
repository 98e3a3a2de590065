"""threatlab: executable threat analyses of DHCPv4, TCP, MOPO-IKE, SCTP and P2PSIP."""

__version__ = "0.1.0"
