from cdp.core.exceptions import InvalidInput, NotFound


class PurposeUnknown(InvalidInput):
    code = "unknown_purpose"
    default_message = "Unknown purpose."


class NoticeVersionUnknown(InvalidInput):
    code = "unknown_notice_version"
    default_message = "Unknown notice version."


class TcStringInvalid(InvalidInput):
    code = "invalid_tc_string"
    default_message = "The TC string could not be decoded."


class ReceiptNotFound(NotFound):
    code = "receipt_not_found"
    default_message = "No such receipt."


class ReceiptKeyNotFound(NotFound):
    code = "key_not_found"
    default_message = "No such key."
