"""Errors a step raises for the user to read: the message is shown as is, without a traceback."""


class StepError(Exception):
    pass
