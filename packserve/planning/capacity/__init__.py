"""The pure capacity model: a profile and a load in, a plan and simulated latencies out.

Starts no process, opens no file and measures nothing, so every answer follows from its inputs;
it imports only `packserve.planning.formats` of the planning package (and the core's batch
decision, which the simulator drives with a fake clock).
"""
