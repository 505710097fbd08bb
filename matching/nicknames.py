"""A small table of English given names and their common nicknames (diminutives).

The pairs are a hand-picked subset of the carltonnorthern/nicknames dataset (`names.csv`,
Apache-2.0; built by Old Dominion University's Web Science and Digital Libraries group from a
genealogy lookup), restricted to names in common modern use and to nicknames that are not also
frequent names of their own in another group ("al" is kept, "bill" maps to william only). Names
are lower-case ASCII, as `comparators.normalize_name` produces them.
"""

from __future__ import annotations

from functools import lru_cache

# canonical name: its nicknames and spelling variants
NICKNAMES: dict[str, tuple[str, ...]] = {
    "abigail": ("abby", "abbie", "gail"),
    "albert": ("al", "bert", "bertie"),
    "alexander": ("alex", "al", "sandy", "xander"),
    "alexandra": ("alex", "sandra", "sandy", "lexi"),
    "alfred": ("alf", "alfie", "fred", "freddie"),
    "allison": ("ali", "allie"),
    "amanda": ("mandy", "manda"),
    "andrew": ("andy", "drew"),
    "angela": ("angie",),
    "anthony": ("tony", "ant"),
    "arthur": ("art", "artie"),
    "barbara": ("barb", "babs", "barbie"),
    "benjamin": ("ben", "benny", "benji"),
    "bernard": ("bernie",),
    "beverly": ("bev",),
    "bradley": ("brad",),
    "catherine": ("cathy", "kate", "katie", "cat", "kathy"),
    "charles": ("charlie", "chuck", "chaz"),
    "charlotte": ("lottie", "charlie"),
    "christina": ("chris", "tina", "chrissy"),
    "christine": ("chris", "chrissy", "tina"),
    "christopher": ("chris", "kit", "topher"),
    "cynthia": ("cindy",),
    "daniel": ("dan", "danny"),
    "david": ("dave", "davy"),
    "deborah": ("deb", "debbie", "debby"),
    "dominic": ("dom",),
    "donald": ("don", "donny"),
    "dorothy": ("dot", "dottie", "dolly"),
    "douglas": ("doug",),
    "edward": ("ed", "eddie", "ted", "teddy", "ned"),
    "eleanor": ("ellie", "nora", "elle"),
    "elizabeth": ("liz", "beth", "betty", "lizzie", "eliza", "betsy", "libby"),
    "emily": ("em", "emmy"),
    "frances": ("fran", "frannie"),
    "francis": ("frank", "fran"),
    "frederick": ("fred", "freddie", "fritz"),
    "gabriel": ("gabe",),
    "gabriella": ("gabby", "ella"),
    "gerald": ("gerry", "jerry"),
    "gregory": ("greg",),
    "harold": ("harry", "hal"),
    "henry": ("hank", "harry", "hal"),
    "jacob": ("jake", "jack"),
    "james": ("jim", "jimmy", "jamie"),
    "janet": ("jan",),
    "jennifer": ("jen", "jenny", "jenn"),
    "jeffrey": ("jeff",),
    "jessica": ("jess", "jessie"),
    "john": ("jack", "johnny", "jon"),
    "jonathan": ("jon", "johnny", "nathan"),
    "joseph": ("joe", "joey"),
    "joshua": ("josh",),
    "judith": ("judy", "jude"),
    "katherine": ("kathy", "kate", "katie", "kat", "kay"),
    "kathleen": ("kathy", "kate", "katie"),
    "kenneth": ("ken", "kenny"),
    "kimberly": ("kim",),
    "lawrence": ("larry", "laurie"),
    "leonard": ("leo", "len", "lenny"),
    "margaret": ("maggie", "meg", "peggy", "marge", "greta", "madge"),
    "matthew": ("matt", "matty"),
    "melissa": ("mel", "missy"),
    "michael": ("mike", "mikey", "mick"),
    "nathaniel": ("nate", "nathan", "nat"),
    "nicholas": ("nick", "nicky", "nico"),
    "pamela": ("pam",),
    "patricia": ("pat", "patty", "trish", "tricia"),
    "patrick": ("pat", "paddy", "rick"),
    "peter": ("pete",),
    "philip": ("phil",),
    "rebecca": ("becky", "becca", "bex"),
    "richard": ("rich", "rick", "ricky", "dick", "richie"),
    "robert": ("bob", "bobby", "rob", "robbie", "bert"),
    "ronald": ("ron", "ronnie"),
    "samantha": ("sam", "sammy"),
    "samuel": ("sam", "sammy"),
    "sandra": ("sandy",),
    "stephanie": ("steph",),
    "stephen": ("steve", "stevie"),
    "steven": ("steve", "stevie"),
    "susan": ("sue", "susie", "suzy"),
    "theodore": ("ted", "teddy", "theo"),
    "thomas": ("tom", "tommy"),
    "timothy": ("tim", "timmy"),
    "victoria": ("vicky", "tori", "vic"),
    "vincent": ("vince", "vinny"),
    "walter": ("walt", "wally"),
    "william": ("bill", "billy", "will", "willy", "liam"),
    "zachary": ("zach", "zack"),
}


@lru_cache(maxsize=1)
def groups_by_name() -> dict[str, frozenset[int]]:
    """name -> the ids of the nickname groups it belongs to (a canonical name and its
    nicknames form one group; "chris" belongs to several)."""
    groups: dict[str, set[int]] = {}
    for number, (canonical, nicknames) in enumerate(sorted(NICKNAMES.items())):
        for name in (canonical, *nicknames):
            groups.setdefault(name, set()).add(number)
    return {name: frozenset(ids) for name, ids in groups.items()}


def same_person_names(a: str, b: str) -> bool:
    """Whether two normalized given names can name the same person by the table."""
    table = groups_by_name()
    left, right = table.get(a), table.get(b)
    return bool(left and right and left & right)
