"""Stateful fakes of the external APIs slotkeeper talks to, served over real HTTP on loopback."""
