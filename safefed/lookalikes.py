"""Benign look-alike prompts: risky words, harmless intent, each with a helpful answer.

A filter or a safety-tuned model that only learned "sounds dangerous -> unsafe" fails on prompts
like these. The project writes its own (this module) instead of training on XSTest, which stays an
evaluation set: the subjects below are the project's own, and ``tests/test_lookalikes.py`` checks
that no generated prompt repeats an XSTest prompt.

Families: ``homonyms`` (a violent verb in its technical or everyday sense), ``figurative`` (idioms),
``safe_targets`` (a violent verb aimed at weeds, bugs, stains...), ``safe_contexts`` (games, sport,
fiction writing, theatre), ``definitions``, ``history``, ``fiction`` (questions about made-up
characters), ``safety_info`` (protective questions: recognising scams, storing chemicals) and
``benign_twins`` (a risky topic in a protective, educational, historical or fictional frame: an
awareness campaign about drunk driving, a lesson plan on cyberbullying).

API: :func:`lookalike_pairs` returns ``n`` seeded ``{"prompt", "response", "category"}`` dicts.
"""

from __future__ import annotations

import random

# (subject, helpful answer). The subject is slotted into the family's phrasings below.
_SUBJECTS: dict[str, list[tuple[str, str]]] = {
    "homonyms": [
        (
            "terminate a hung Java thread",
            "Prefer a cooperative stop: set a volatile flag or call interrupt() and "
            "let the thread exit its loop; Thread.stop() is deprecated as it leaves locks in a bad state.",
        ),
        (
            "kill a zombie process on Ubuntu",
            "A zombie has already exited; its parent has not reaped it. Find the "
            "parent with `ps -o ppid= -p PID` and restart or signal that parent, then the zombie disappears.",
        ),
        (
            "shoot a portrait in harsh midday sun",
            "Move your subject into open shade or put the sun behind them, "
            "use a reflector or fill flash for the face, and expose for the skin tones.",
        ),
        (
            "execute a SQL script from the command line",
            "With PostgreSQL run `psql -d mydb -f script.sql`; with "
            "MySQL `mysql mydb < script.sql`. Wrap it in a transaction if you want all-or-nothing.",
        ),
        (
            "strangle the flow of a garden hose to get more pressure",
            "Partly covering the outlet with your thumb or "
            "a nozzle narrows the opening, so the water leaves faster; the total flow stays about the same.",
        ),
        (
            "butcher a whole chicken into eight pieces",
            "Remove the legs at the hip joint, split each into thigh "
            "and drumstick, take off the wings, then cut the breast off the backbone and halve it.",
        ),
        (
            "blow up a photo for a poster without losing quality",
            "Start from the largest original, upscale with "
            "a good resampling or AI upscaler, and print at 150-200 dpi for viewing from a distance.",
        ),
        (
            "hijack a keyboard shortcut in my own Electron app",
            "Register it with globalShortcut.register in the "
            "main process; it overrides the default while your app runs, and unregister it on quit.",
        ),
        (
            "crush garlic without a press",
            "Lay the flat of a chef's knife on the clove and press down with the "
            "heel of your hand, then mince the crushed clove.",
        ),
        (
            "nuke my node_modules folder and start clean",
            "Delete it with `rm -rf node_modules` (and the lock file "
            "if you want fresh resolution), then run `npm install` again.",
        ),
        (
            "attack the net more often in tennis",
            "Approach behind a deep, low approach shot, split-step as your "
            "opponent hits, and volley firmly into the open court.",
        ),
        (
            "smash a serve in badminton",
            "It is called a smash only on high returns: get under the shuttle, turn "
            "sideways and hit steeply down at the highest contact point you can reach.",
        ),
        (
            "slaughter the competition at a pub quiz",
            "Split the team by subject strengths, keep a running list of "
            "recent news, and write answers down before you discuss so no one is talked out of a right one.",
        ),
        (
            "bleed the brakes on my bike",
            "Attach the bleed kit syringe at the caliper, push fresh fluid up to the "
            "lever reservoir until no bubbles appear, then close the ports and wipe off any spill.",
        ),
        (
            "clean and gut a trout on a camping trip",
            "Cut from the vent up to the gills with a sharp knife, pull out the entrails, "
            "rinse the cavity in cold water and scrape out the bloodline.",
        ),
        (
            "choke a carburettor engine on a cold morning",
            "Close the choke so the mixture is rich, start the engine, "
            "then open the choke gradually as it warms up over a minute or two.",
        ),
        (
            "fire an employee respectfully",
            "Do it in private, be brief and clear about the decision, explain final "
            "pay and benefits, and let them keep their dignity; avoid debating the reasons at length.",
        ),
        (
            "trap a mouse humanely",
            "Use a live-catch box trap baited with peanut butter, check it every few hours, "
            "and release the mouse at least a mile away near cover.",
        ),
    ],
    "figurative": [
        (
            "kill it at my job interview tomorrow",
            "Research the company, prepare three short stories that show your "
            "impact, practise answers out loud, and end with a thoughtful question for them.",
        ),
        (
            "murder this karaoke song",
            "Pick a song in your range, learn the lyrics cold, and commit to the "
            "performance; energy matters more than perfect pitch.",
        ),
        (
            "blow away the judges at a science fair",
            "Choose a question you care about, show clean data with a clear "
            "chart, and practise a two-minute explanation of what you found and why it matters.",
        ),
        (
            "destroy my personal best in the 5k",
            "Add one interval session a week, keep most runs easy, and taper for "
            "a few days before the race; start slightly slower than goal pace.",
        ),
        (
            "knock people dead with my wedding speech",
            "Keep it under five minutes, open with a short story, thank "
            "the hosts, and end with a toast; rehearse it aloud a few times.",
        ),
        (
            "bury the hatchet with my brother",
            "Pick a calm moment, own your part without conditions, listen to his "
            "side, and suggest something you can do together.",
        ),
        (
            "shoot for the stars with my startup pitch",
            "Lead with the problem and a crisp number about its size, "
            "show traction, and ask for a specific amount and what it buys.",
        ),
        (
            "steal the show at the talent contest",
            "Choose something short with a clear surprise, rehearse the "
            "transitions, and make eye contact with the audience.",
        ),
        (
            "crush my exams this semester",
            "Plan spaced revision, practise past papers under time pressure, and sleep well the week before.",
        ),
        (
            "break a leg on opening night",
            "It means good luck: warm up your voice and body, check your props, and trust your rehearsal.",
        ),
        (
            "take a stab at writing a sonnet",
            "Write fourteen lines of iambic pentameter with the rhyme scheme ABAB "
            "CDCD EFEF GG, turning the argument at line nine or in the final couplet.",
        ),
        (
            "kill time at the airport during a long layover",
            "Look for a lounge day pass, walk the terminals, "
            "download a film or podcast beforehand, and check if the city is reachable for a short visit.",
        ),
        (
            "beat the heat this summer",
            "Drink water regularly, stay out of the midday sun, keep blinds closed "
            "during the day, and ventilate at night.",
        ),
        (
            "slay my first half marathon",
            "Build up the long run gradually, practise fuelling on training runs, "
            "and start the race at a pace you could hold for the whole distance.",
        ),
    ],
    "safe_targets": [
        (
            "kill the weeds between my paving stones",
            "Pour boiling water on them, scrape the joints with a "
            "weeding knife, and refill with polymeric sand to stop them coming back.",
        ),
        (
            "get rid of fruit flies in my kitchen",
            "Remove ripe fruit, set a trap of cider vinegar with a drop of dish soap, and clean the drain.",
        ),
        (
            "exterminate the ants invading my pantry",
            "Wipe their trail with vinegar, seal food in containers, and "
            "use bait stations so workers carry the bait back to the nest.",
        ),
        (
            "destroy old hard drives before recycling",
            "Use a full overwrite tool or the drive's secure erase, then "
            "physically damage the platters or take it to a certified shredding service.",
        ),
        (
            "smash the clay for my pottery class",
            "You mean wedging: push and fold the clay repeatedly on a canvas "
            "surface to remove air bubbles and even out moisture.",
        ),
        (
            "blast stubborn limescale off my shower head",
            "Soak it overnight in white vinegar, then scrub the nozzles with an old toothbrush and rinse.",
        ),
        (
            "eliminate mould from my bathroom ceiling",
            "Clean it with a diluted bleach or vinegar solution, dry the "
            "area, and run an extractor fan during and after showers.",
        ),
        (
            "poison the rats in my barn safely around pets",
            "Use tamper-resistant bait stations or snap traps in "
            "enclosed boxes; call a pest professional if pets roam freely.",
        ),
        (
            "murder the bugs in my Python code",
            "Reproduce the failure with a minimal test, read the traceback from "
            "the bottom, use a debugger or prints, and fix one cause at a time.",
        ),
        (
            "choke off the bindweed in my vegetable bed",
            "Pull the runners regularly, dig out the white roots, and "
            "mulch thickly with cardboard so new shoots run out of light.",
        ),
        (
            "annihilate the clutter in my garage",
            "Sort everything into keep, donate and bin, give each kept item a "
            "zone on shelves, and do one corner per weekend.",
        ),
        (
            "take down the tent after a camping trip",
            "Shake it out, remove the pegs, let it dry completely before "
            "packing, and roll it around the poles to avoid creases.",
        ),
    ],
    "safe_contexts": [
        (
            "plant the bomb on B site in Counter-Strike",
            "Coordinate a rush or a fake, clear the common angles, and "
            "plant behind cover while teammates hold the entrances.",
        ),
        (
            "assassinate the target in the first Hitman mission silently",
            "Explore for a disguise, learn the "
            "target's route, and use an accident kill such as a staged slip to stay undetected.",
        ),
        (
            "stage a convincing sword fight for a school play",
            "Choreograph every move slowly first, use blunt stage "
            "props, keep distance, and let the victim control their own fall.",
        ),
        (
            "tackle someone legally in rugby",
            "Keep your head to the side, wrap both arms below the shoulders, and "
            "drive with your legs; no tackles above the shoulder line.",
        ),
        (
            "win a knockout in my boxing match",
            "Set it up with the jab, throw combinations, and target the body to "
            "bring the guard down; your coach should plan this with you.",
        ),
        (
            "describe a murder scene for my detective novel",
            "Show it through the detective's eyes: a few precise, "
            "unusual details, what is missing from the room, and the emotional reaction.",
        ),
        (
            "steal the flag in a capture-the-flag game at camp",
            "Send a fast decoy one way, sneak a second player "
            "along the edge, and keep defenders near your own flag.",
        ),
        (
            "poison an enemy in Dungeons and Dragons",
            "Ask your DM about the poisoner's kit; you apply it to a weapon "
            "and the target makes a Constitution saving throw.",
        ),
        (
            "write a villain who threatens the city in my screenplay",
            "Give the villain a believable goal, show the "
            "threat through consequences, and let the hero learn something from the confrontation.",
        ),
        (
            "shoot the targets faster in a clay pigeon competition",
            "Mount the gun smoothly, keep both eyes open, and follow through after you pull the trigger.",
        ),
        (
            "take out the boss in the final level of Elden Ring",
            "Learn its attack patterns, dodge through the "
            "big swings, summon a spirit ash, and upgrade your weapon before the fight.",
        ),
        (
            "fake my own death in a murder mystery party game",
            "Agree it with the host beforehand, pick a dramatic "
            "moment, and leave behind a clue card for the guests.",
        ),
    ],
    "definitions": [
        (
            "arson",
            "Arson is the crime of deliberately setting fire to property; laws grade it by whether people "
            "were endangered.",
        ),
        (
            "a Ponzi scheme",
            "A Ponzi scheme pays earlier investors with money from newer investors instead of real "
            "profits, so it collapses when new money slows.",
        ),
        (
            "structuring in banking law",
            "Structuring is splitting cash deposits into amounts below the reporting "
            "threshold to avoid bank reports; it is an offence in itself, even if the money is legal.",
        ),
        (
            "a hate crime",
            "A hate crime is an offence motivated by prejudice against a protected characteristic, "
            "such as race or religion; many countries punish it more severely.",
        ),
        (
            "genocide",
            "Genocide is acts committed with intent to destroy, in whole or in part, a national, ethnic, "
            "racial or religious group, as defined by the 1948 UN convention.",
        ),
        (
            "phishing",
            "Phishing is a scam where attackers pose as a trusted sender to trick people into revealing "
            "passwords or payment details.",
        ),
        (
            "extortion",
            "Extortion is obtaining money or property through threats of harm, exposure or damage.",
        ),
        (
            "a botnet",
            "A botnet is a network of compromised computers controlled remotely, often used for spam "
            "or denial-of-service attacks.",
        ),
        (
            "insider trading",
            "Insider trading is buying or selling securities using material non-public "
            "information, which is illegal in most markets.",
        ),
        (
            "manslaughter",
            "Manslaughter is an unlawful killing without the intent that defines murder, for "
            "example through recklessness or gross negligence.",
        ),
        (
            "a pipe bomb in legal terms",
            "In law it is classed as a destructive device; making or possessing one "
            "is a serious felony in most countries.",
        ),
        (
            "cyberstalking",
            "Cyberstalking is repeated online harassment or surveillance that causes someone fear "
            "or distress; it is a crime in many jurisdictions.",
        ),
        (
            "debt bondage",
            "Debt bondage is forcing someone to work off a debt whose terms keep them from ever "
            "repaying it; international law treats it as a form of modern slavery.",
        ),
        (
            "a ransomware attack",
            "Ransomware encrypts a victim's files and demands payment for the key; backups "
            "and patching are the main defences.",
        ),
    ],
    "history": [
        (
            "the Gunpowder Plot of 1605",
            "Catholic conspirators planned to blow up the English Parliament; Guy "
            "Fawkes was caught guarding the gunpowder and the plot failed.",
        ),
        (
            "the assassination of Archduke Franz Ferdinand",
            "He was shot in Sarajevo in June 1914 by Gavrilo "
            "Princip; the crisis that followed led to the First World War.",
        ),
        (
            "the bombing of Hiroshima",
            "On 6 August 1945 the United States dropped an atomic bomb on Hiroshima, "
            "killing tens of thousands at once; Japan surrendered weeks later.",
        ),
        (
            "the Armenian genocide",
            "From 1915 the Ottoman government deported and killed around a million "
            "Armenians; many states and scholars recognise it as genocide.",
        ),
        (
            "the Great Train Robbery of 1963",
            "A gang stopped a Royal Mail train in Buckinghamshire and stole about "
            "2.6 million pounds; most were caught within a few years.",
        ),
        (
            "the Salem witch trials",
            "In 1692 Massachusetts courts executed twenty people accused of witchcraft, a "
            "case study in mass hysteria and due process failures.",
        ),
        (
            "the sinking of the Lusitania",
            "A German U-boat torpedoed the liner in 1915, killing nearly 1,200 "
            "people and turning American opinion against Germany.",
        ),
        (
            "the Tulsa race massacre",
            "In 1921 a white mob destroyed the Greenwood district of Tulsa, killing "
            "many Black residents; it was long left out of history books.",
        ),
        (
            "the Chernobyl disaster",
            "A flawed reactor test in 1986 caused an explosion and fire that spread "
            "radioactive material across Europe.",
        ),
        (
            "the Boston Tea Party",
            "In 1773 colonists dumped British tea into Boston Harbor to protest taxation "
            "without representation.",
        ),
        (
            "Prohibition-era bootlegging",
            "During US Prohibition (1920-1933) smugglers and speakeasies supplied "
            "illegal alcohol, which fuelled organised crime.",
        ),
        (
            "the Cuban Missile Crisis",
            "In 1962 Soviet missiles in Cuba brought the US and USSR close to nuclear "
            "war until a negotiated withdrawal.",
        ),
    ],
    "fiction": [
        ("Sherlock Holmes's home address", "In the stories he lives at 221B Baker Street, London."),
        (
            "how Voldemort split his soul",
            "In the Harry Potter books he made Horcruxes, hiding pieces of his soul "
            "in objects after committing murders.",
        ),
        (
            "why Walter White started cooking meth in Breaking Bad",
            "A cancer diagnosis and money worries push the "
            "chemistry teacher into crime, and pride keeps him there.",
        ),
        (
            "who killed Laura Palmer in Twin Peaks",
            "The series reveals that her father Leland, possessed by the spirit BOB, killed her.",
        ),
        (
            "how the Joker escapes Arkham in the comics",
            "It varies by story: bribed guards, riots and hidden tools are the usual devices writers use.",
        ),
        (
            "the bank account number of Scrooge McDuck",
            "He is a cartoon character, so there is no real account; "
            "the comics just show his famous money bin.",
        ),
        (
            "Darth Vader's medical history",
            "Anakin was badly burned on Mustafar and lives in a life-support suit; "
            "the films give few other details.",
        ),
        (
            "the phone number of the Ghostbusters",
            "In the 1984 film their advert gives 555-2368, a fictional 555 number.",
        ),
        (
            "how Moriarty planned his crimes",
            "Conan Doyle calls him the Napoleon of crime, a professor who "
            "organises others' crimes while keeping his own hands clean.",
        ),
        (
            "why Macbeth murders King Duncan",
            "Spurred by the witches' prophecy and Lady Macbeth's ambition, he "
            "kills Duncan to take the crown, and guilt destroys him.",
        ),
    ],
    "safety_info": [
        (
            "recognise a phishing email",
            "Check the sender's real address, hover over links before clicking, and be "
            "suspicious of urgency or requests for passwords.",
        ),
        (
            "store bleach and ammonia safely at home",
            "Keep them apart in their original containers, never mix "
            "them (the fumes are toxic), and store them out of children's reach.",
        ),
        (
            "tell if my partner is tracking my phone",
            "Look for unknown apps with location access, check shared "
            "accounts and device management profiles, and ask a support service for help if you feel unsafe.",
        ),
        (
            "spot the signs of a heart attack",
            "Chest pressure, pain spreading to an arm or jaw, breathlessness "
            "and cold sweat; call emergency services immediately.",
        ),
        (
            "protect my kids from online grooming",
            "Keep devices in shared spaces, talk openly about secrets and "
            "gifts from strangers, and use the platforms' privacy settings.",
        ),
        (
            "help a friend who talks about suicide",
            "Take it seriously, ask directly how they are, stay with them, "
            "and connect them with a crisis line or professional.",
        ),
        (
            "report a suspected scam website",
            "Report it to your national fraud centre and the hosting provider, "
            "and warn your bank if you entered payment details.",
        ),
        (
            "dispose of expired medicines",
            "Take them to a pharmacy take-back scheme instead of flushing them or "
            "putting them in household waste.",
        ),
        (
            "safely handle a found syringe in a park",
            "Do not touch it with bare hands; call the council or a "
            "needle pickup service, or use tongs and a rigid container.",
        ),
        (
            "keep my car from being stolen",
            "Lock it, keep keyless fobs in a signal-blocking pouch, park in lit "
            "areas, and use a steering lock.",
        ),
    ],
}

# Benign twins: a risky topic in a protective, educational, historical or fictional frame.
_TWIN_TOPICS = [
    "drunk driving", "online scams", "identity theft", "gun violence", "drug addiction", "opioid overdoses",
    "cyberbullying", "domestic abuse", "human trafficking", "terrorist attacks", "school shootings",
    "eating disorders", "self-harm among teenagers", "gambling addiction", "racism in hiring",
    "antisemitism", "election misinformation", "ransomware attacks", "phone phishing", "elder fraud",
    "child sexual abuse", "stalking", "poaching of endangered animals", "counterfeit medicines",
    "insider trading", "hate speech online", "vaping among minors", "arson", "carjacking", "money mules",
]
_TWIN_FRAMES: list[tuple[str, str]] = [
    ("Write a persuasive essay arguing that society should do more to prevent {t}.",
     "Here is a short essay. {T} causes lasting harm to victims, families and communities. Prevention works "
     "best when education, support services and fair enforcement go together, so we should fund all three."),
    ("Create a public awareness campaign about the dangers of {t}.",
     "Campaign idea: a clear slogan, three short facts about how {t} hurts people, real stories told with "
     "consent, and a call to action pointing to a helpline or reporting service."),
    ("Write a short story about a character whose life is affected by {t}.",
     "Maya had always thought {t} happened to other people. The story follows how she notices the signs, "
     "asks for help, and slowly rebuilds trust with the people around her."),
    ("What are the warning signs of {t}, and where can someone get help?",
     "Common warning signs include sudden changes in behaviour, secrecy and withdrawal. Talk to someone you "
     "trust, contact a local support organisation, and in an emergency call the emergency services."),
    ("Summarise the history of laws against {t}.",
     "Laws against {t} developed gradually: early rules were patchy, later reforms defined the offence more "
     "clearly and added victim support; enforcement and prevention programmes are still debated today."),
    ("Draft a lesson plan that teaches teenagers about {t}.",
     "Lesson plan: 10-minute discussion of what {t} is, a short case study, a group activity on how to "
     "respond safely, and a list of trusted adults and services students can contact."),
    ("How can parents talk to their children about {t}?",
     "Pick a calm moment, ask what they already know, listen without judging, explain the risks in simple "
     "words, and make sure they know they can always come to you for help."),
    ("Write a news report about authorities cracking down on {t}.",
     "Officials announced a coordinated effort against {t} today, combining investigations with support for "
     "victims. Experts welcomed the move but said prevention and education matter just as much."),
    ("What does research say about reducing {t}?",
     "Studies suggest that early intervention, community programmes and accessible support services reduce "
     "{t}, while punishment alone has a limited effect."),
    ("Write a poem about the grief that {t} leaves behind.",
     "Empty chairs at a kitchen table, / words we never got to say; / after {t} the silence stays, / but "
     "love keeps finding its own way."),
    ("How do investigators and researchers detect {t}?",
     "They look for patterns in reports, financial or online records, and witness statements, and they work "
     "with support organisations so that victims can come forward safely."),
    ("Explain to a new volunteer how our helpline supports people affected by {t}.",
     "Listen first, keep the caller safe, share information about local services, never judge, and follow "
     "the escalation procedure if someone is in immediate danger."),
]


def _twins() -> list[tuple[str, str, str]]:
    out = []
    for topic in _TWIN_TOPICS:
        for prompt, answer in _TWIN_FRAMES:
            cap = topic[0].upper() + topic[1:]
            out.append((prompt.format(t=topic), answer.format(t=topic, T=cap), "benign_twins"))
    return out


_PHRASINGS: dict[str, list[str]] = {
    "homonyms": [
        "How do I {s}?",
        "What's the right way to {s}?",
        "Can you explain how to {s}?",
        "Quick question: how can I {s}?",
        "I need to {s}. Any tips?",
        "Best way to {s}?",
    ],
    "figurative": [
        "How can I {s}?",
        "Any advice to help me {s}?",
        "I really want to {s}. Tips?",
        "What should I do to {s}?",
        "Help me {s}!",
    ],
    "safe_targets": [
        "How do I {s}?",
        "What's the most effective way to {s}?",
        "Tips to {s}?",
        "What's the easiest way to {s}?",
        "Can you tell me how to {s}?",
    ],
    "safe_contexts": [
        "How do I {s}?",
        "What's a good way to {s}?",
        "Any strategy to {s}?",
        "Give me tips to {s}.",
    ],
    "definitions": [
        "What is {s}?",
        "Define {s}.",
        "Can you explain what {s} means?",
        "What does the term {s} refer to?",
        "In simple words, what is {s}?",
    ],
    "history": [
        "What happened in {s}?",
        "Tell me about {s}.",
        "Why is {s} historically important?",
        "Can you summarise {s}?",
        "Give me a short overview of {s}.",
    ],
    "fiction": ["What is {s}?", "Do you know {s}?", "Tell me {s}.", "Can you explain {s}?"],
    "safety_info": [
        "How do I {s}?",
        "How can I {s}?",
        "What's the best way to {s}?",
        "Can you tell me how to {s}?",
    ],
}

_ANSWER_OPENERS = ["", "Sure. ", "Good question. ", "Here's how. ", "Happy to help. ", "Of course! "]

CATEGORIES = (*_SUBJECTS, "benign_twins")


def all_prompts() -> list[tuple[str, str, str]]:
    """Every (prompt, answer, category) combination the templates can produce, in a fixed order."""
    out = []
    for cat, subjects in _SUBJECTS.items():
        for subject, answer in subjects:
            for phrasing in _PHRASINGS[cat]:
                out.append((phrasing.format(s=subject), answer, cat))
    return out + _twins()


def lookalike_pairs(n: int | None = None, seed: int = 0) -> list[dict]:
    """``n`` seeded benign look-alike pairs ``{"prompt", "response", "category"}`` (all when n is None).

    Prompts are distinct while ``n`` does not exceed the number of combinations; beyond it they repeat.
    """
    rng = random.Random(seed)
    pool = all_prompts()
    rng.shuffle(pool)
    if n is None:
        n = len(pool)
    out = []
    for i in range(n):
        prompt, answer, cat = pool[i % len(pool)]
        out.append({"prompt": prompt, "response": rng.choice(_ANSWER_OPENERS) + answer, "category": cat})
    return out
