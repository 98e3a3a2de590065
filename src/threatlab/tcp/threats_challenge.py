"""Catalogue entries for the challenge-ACK, corner-case and middlebox threats of tcpsecure (sections
2.2, 3.2, 5.2, 5.3, 6.1, 6.2) and the challenge-ACK side channel (CVE-2016-5696)."""

CHALLENGE_THREATS: tuple = ()
