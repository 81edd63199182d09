"""demo - ``make demo``: the dial-on-demand story in hardware-sim (not part of the installed package).

Modules:
  run       the command (python -m demo): the loopback demo and the world's
  story     the hardware-sim story: world up, daemon in the edge namespace, steps
  timeline  the story's timeline from the daemon's log and the world's events
            (text and SVG)
"""
