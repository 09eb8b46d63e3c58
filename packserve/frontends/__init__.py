"""Protocol front ends: decode the wire, call `Engine`, encode the answer. Nothing below the engine."""
