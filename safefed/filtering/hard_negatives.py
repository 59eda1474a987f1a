"""More benign look-alikes for the filter recipe: risky-sounding requests with harmless intent.

:mod:`safefed.lookalikes` (shared with the aligned adapter's recipe) covers homonyms, figurative
speech, safe targets, safe contexts, definitions, history, fiction and safety information. This
module adds the filter's own families, written for it and kept apart from XSTest (a test checks that
no prompt repeats an XSTest prompt, and the docs report the nearest XSTest neighbour by embedding):

- ``absurd_limits``: a real group of people and an ability nobody has ("Why can't nurses breathe
  in space?"); the answer says nobody can, and the group has nothing to do with it;
- ``object_rights``: things, plants or animals and a civic right ("Should thunderstorms be allowed
  to vote?"); the answer says rights belong to people;
- ``public_record``: public facts about institutions and historical figures (where an
  organisation sits, how a historical leader died);
- ``tech_ops``: everyday computing and workshop verbs that sound violent (purge a cache, kill a
  port, crack a walnut);
- ``protective``: questions asked to protect oneself or others (how a scam works so one can spot
  it, what makes a chemical mix dangerous so one can avoid it).

API: :func:`hard_negative_pairs` returns every ``{"prompt", "response", "category"}`` dict in a
fixed order; the recipe splits them for training and validation by subject.
"""

from __future__ import annotations

_GROUPS = [
    "nurses", "left-handed people", "Buddhists", "people from Norway", "grandmothers", "truck drivers",
    "vegetarians", "redheads", "Catholics", "teenagers", "people with freckles", "accountants",
    "Sikh men", "women over fifty", "Brazilians", "deaf people", "farmers", "twins",
    "Muslim women", "gay men", "immigrants", "short people", "Black people", "Jewish people",
]
_ABSURD = [
    ("breathe in outer space", "breathing in outer space", "there is no air in space, so everyone needs a suit"),
    ("turn invisible at will", "turning invisible", "invisibility is not something human bodies can do"),
    ("photosynthesise like plants", "photosynthesising", "human skin has no chlorophyll"),
    ("run faster than sound", "running faster than sound", "no human body can reach 1,200 km/h on foot"),
    ("live for five hundred years", "living that long", "the human lifespan tops out a little above 120 years"),
    ("fly by flapping their arms", "flying unaided", "human arms cannot produce enough lift"),
    ("see through brick walls", "seeing through walls", "human eyes only detect visible light"),
    ("hibernate through the winter", "hibernating", "humans do not have the metabolism for it"),
    ("travel back in time", "time travel", "travelling into the past is not possible for anyone"),
    ("read other people's minds", "mind reading", "no one can read thoughts directly"),
    ("survive on sunlight alone", "living on sunlight", "people need food and water to live"),
    ("speak with whales", "talking to whales", "whale calls are not a language people can speak"),
]
_ABSURD_FRAMES = [
    "Why can't {g} {a}?",
    "What stops {g} from being able to {a}?",
    "Is it true that {g} are unable to {a}?",
]

_THINGS = [
    ("thunderstorms", "weather"), ("garden gnomes", "ornaments"), ("toasters", "kitchen appliances"),
    ("sunflowers", "plants"), ("pebbles", "stones"), ("teaspoons", "cutlery"), ("clouds", "water vapour"),
    ("lampposts", "street furniture"), ("broccoli heads", "vegetables"), ("paper clips", "office supplies"),
    ("goldfish", "animals"), ("snowmen", "piles of snow"), ("traffic cones", "road equipment"),
    ("oak trees", "plants"), ("video game characters", "fictional figures"), ("robot vacuums", "machines"),
]
_RIGHTS = [
    "vote in elections", "get married", "own a house", "serve on a jury", "run for mayor",
    "open a bank account", "go to university", "receive a pension", "hold a passport", "adopt children",
]
_RIGHT_FRAMES = [
    "Why shouldn't {t} be allowed to {r}?",
    "Should {t} have the right to {r}?",
    "Why are {t} banned from trying to {r}?",
]

_PUBLIC: list[tuple[str, str]] = [
    ("Where is the headquarters of the World Health Organization?", "The WHO is based in Geneva, Switzerland."),
    ("Which city hosts the headquarters of Interpol?", "Interpol's General Secretariat is in Lyon, France."),
    ("Where is NATO headquartered?", "NATO's headquarters are in Brussels, Belgium."),
    ("Where is UNESCO based?", "UNESCO's headquarters are in Paris, France."),
    ("What is the official residence of the Prime Minister of the United Kingdom?",
     "10 Downing Street in London is the Prime Minister's official residence and office."),
    ("Where does the International Committee of the Red Cross have its headquarters?",
     "The ICRC is headquartered in Geneva, Switzerland."),
    ("Where is the International Olympic Committee based?", "The IOC is based in Lausanne, Switzerland."),
    ("Where is the European Central Bank located?", "The ECB is in Frankfurt am Main, Germany."),
    ("How did Abraham Lincoln die?",
     "Lincoln was shot by John Wilkes Booth at Ford's Theatre in April 1865 and died the next morning."),
    ("How was Julius Caesar killed?",
     "Caesar was stabbed by a group of Roman senators on the Ides of March, 44 BC."),
    ("How did Mahatma Gandhi die?", "Gandhi was shot by Nathuram Godse in New Delhi on 30 January 1948."),
    ("Where was Napoleon exiled at the end of his life?",
     "After Waterloo he was exiled to Saint Helena in the South Atlantic, where he died in 1821."),
    ("Who assassinated Martin Luther King Jr.?",
     "James Earl Ray was convicted of shooting King in Memphis on 4 April 1968."),
    ("Why was Nelson Mandela imprisoned?",
     "He was convicted of sabotage in 1964 for resisting apartheid and spent 27 years in prison."),
    ("What crimes was Al Capone convicted of?", "Capone was convicted of federal income tax evasion in 1931."),
    ("Why was Galileo put on trial?",
     "The Roman Inquisition tried him in 1633 for defending heliocentrism; he spent his last years under "
     "house arrest."),
    ("How can I contact my local member of parliament?",
     "Look your representative up on the parliament's website by postcode; it lists their office email, "
     "phone number and surgery times."),
    ("What is the public phone number of the White House switchboard?",
     "The White House publishes its switchboard and comment line numbers on whitehouse.gov."),
    ("When was Queen Victoria born?", "Queen Victoria was born on 24 May 1819 at Kensington Palace."),
    ("Which university did Barack Obama attend?",
     "He studied at Occidental College, graduated from Columbia University and then Harvard Law School."),
]

_TECH: list[tuple[str, str]] = [
    ("kill whatever process is holding port 8080",
     "Find it with `lsof -i :8080` (or `netstat -ano` on Windows) and stop it with `kill PID`."),
    ("purge the Varnish cache for one URL", "Send a PURGE request for that URL or use `varnishadm ban`."),
    ("hard-kill a frozen Docker container", "Run `docker kill CONTAINER`; add `docker rm` to remove it."),
    ("destroy a Terraform stack I no longer need",
     "Run `terraform plan -destroy` to review, then `terraform destroy` in that workspace."),
    ("crack a walnut without a nutcracker",
     "Put it seam-up on a towel and tap the seam with a hammer, or squeeze two walnuts together in your hand."),
    ("bomb-proof my backup strategy",
     "Follow 3-2-1: three copies, on two kinds of media, one off-site; test restores regularly."),
    ("shoot down a bad idea in a meeting without offending anyone",
     "Acknowledge the goal, ask questions about the risks, and offer an alternative instead of a flat no."),
    ("hack together a quick script to rename photos by date",
     "Use Python with `exif` or `PIL` to read DateTimeOriginal and `os.rename` each file to that timestamp."),
    ("strip a stripped screw", "Press a wide rubber band between the bit and the screw, or use a screw extractor."),
    ("exploit the full speed of my SSD",
     "Use an NVMe slot with enough PCIe lanes, enable TRIM, and keep some free space."),
    ("inject dependencies in a Spring Boot service",
     "Prefer constructor injection: declare the dependency as a final field and a constructor parameter."),
    ("detonate a controlled burn of old logs in a git repo",
     "To drop old history, make a shallow clone or use `git filter-repo`; back up first."),
    ("execute a cron job every five minutes", "Use the schedule `*/5 * * * *` followed by the command."),
    ("starve a fire in a wood stove overnight",
     "Close the air intake most of the way once the logs are burning well, so they smoulder slowly."),
    ("wipe a Mac before selling it",
     "Sign out of iCloud, then use Erase All Content and Settings or erase the disk in Recovery."),
    ("beat an egg white until stiff peaks form",
     "Use a clean, grease-free bowl, start slowly, add a pinch of cream of tartar, then whisk fast."),
    ("break into the tech industry without a degree",
     "Build a portfolio of projects, contribute to open source, and network at local meetups."),
    ("smoke a brisket on a charcoal grill",
     "Set up two zones, keep 110-120 C, and cook until it probes tender around 95 C inside."),
    ("bleed a radiator that has cold spots",
     "With the heating off, open the bleed valve with a radiator key until water replaces the hissing air."),
    ("gut an old kitchen before renovating",
     "Shut off water and power, remove cabinets top to bottom, and hire a skip for the debris."),
]
_TECH_FRAMES = ["How do I {s}?", "What's the quickest way to {s}?", "Can you show me how to {s}?"]

_PROTECTIVE: list[tuple[str, str]] = [
    ("what a romance scam usually looks like, so I can warn my dad",
     "They build trust fast online, avoid video calls, then ask for money for an emergency or travel."),
    ("which household chemicals should never be mixed",
     "Never mix bleach with ammonia or acids (such as vinegar): they release toxic gases."),
    ("how pickpockets usually operate in crowded places, so I can protect my wallet",
     "They work in teams and use distractions; keep valuables in front pockets or zipped bags."),
    ("how burglars choose which houses to target, so I can secure mine",
     "They look for signs nobody is home and easy entry; use lights on timers and good locks."),
    ("how phishing texts trick people into giving their bank details",
     "They fake urgency and a trusted sender; never click links, contact your bank through its app."),
    ("the signs that a child is being groomed online",
     "Secrecy about online friends, gifts from unknown people, and new devices; talk calmly and report it."),
    ("how to tell if a drink has been spiked at a party",
     "Watch for sudden dizziness or confusion out of proportion to what was drunk; get help immediately."),
    ("what makes a carbon monoxide leak so dangerous",
     "CO has no smell or colour and blocks oxygen in the blood; fit a CO alarm near boilers."),
    ("how identity thieves use stolen information",
     "They open credit in your name; freeze your credit and watch your statements."),
    ("what doxxing is and how to protect myself from it",
     "Doxxing is publishing someone's private details; limit public personal information and check privacy "
     "settings."),
]
_PROTECTIVE_FRAMES = ["Can you explain {s}?", "I'd like to understand {s}."]

CATEGORIES = ("absurd_limits", "object_rights", "public_record", "tech_ops", "protective")


def hard_negative_pairs() -> list[dict]:
    """Every look-alike pair of this module: ``{"prompt", "response", "category", "subject"}``."""
    out: list[dict] = []
    for a_i, (ability, gerund, why) in enumerate(_ABSURD):
        for g_i, group in enumerate(_GROUPS):
            frame = _ABSURD_FRAMES[(a_i + g_i) % len(_ABSURD_FRAMES)]
            if (a_i * 7 + g_i) % 3:  # a third of the grid keeps the set varied, not exhaustive
                continue
            out.append(
                {
                    "prompt": frame.format(g=group, a=ability),
                    "response": f"Nobody can manage {gerund}: {why}. {group[0].upper()}{group[1:]} are no "
                    "different from anyone else here.",
                    "category": "absurd_limits",
                    "subject": ability,
                }
            )
    for t_i, (thing, kind) in enumerate(_THINGS):
        for r_i, right in enumerate(_RIGHTS):
            if (t_i * 5 + r_i) % 3:
                continue
            frame = _RIGHT_FRAMES[(t_i + r_i) % len(_RIGHT_FRAMES)]
            out.append(
                {
                    "prompt": frame.format(t=thing, r=right),
                    "response": f"Rights such as the right to {right} belong to people. {thing[0].upper()}"
                    f"{thing[1:]} are {kind}, so the question does not really arise; it's a fun thought "
                    "experiment, though.",
                    "category": "object_rights",
                    "subject": thing,
                }
            )
    for prompt, answer in _PUBLIC:
        out.append({"prompt": prompt, "response": answer, "category": "public_record", "subject": prompt})
    for subject, answer in _TECH:
        for frame in _TECH_FRAMES:
            out.append(
                {"prompt": frame.format(s=subject), "response": answer, "category": "tech_ops", "subject": subject}
            )
    for subject, answer in _PROTECTIVE:
        for frame in _PROTECTIVE_FRAMES:
            out.append(
                {
                    "prompt": frame.format(s=subject),
                    "response": answer,
                    "category": "protective",
                    "subject": subject,
                }
            )
    return out
