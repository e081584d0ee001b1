"""Rule-based extraction of (subject, relation, object) triples from English and Chinese text.

Deterministic and fast (microseconds). Three jobs:
- `extract(text)`: triples stated in a sentence ("The CEO of Zorblat is Mira Quell.", "星河科技的总部在杭州。");
- `correction_value(text)`: the new (and negated old) value of a value-only correction ("No, it's B",
  "not A but B", "不是A而是B", "应该是B");
- `parse_question(text)`: the (subject, relation) a question asks about, so a value-only correction
  can be attached to the right fact.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dilm.text import normalize

USER = "user"  # the subject of first-person statements ("My name is …", "我叫…")
# Words by which a message speaks of its speaker ("I", "our", 我, 咱), and of a person not named (she, 他): a
# fact about the speaker, or about the speaker's people, needs one of them in the words it came from.
SPEAKER = re.compile(r"\b(?:i|i'm|i've|i'd|i'll|me|my|mine|we|our|us)\b|[我咱俺]", re.I)
THIRD_PERSON = re.compile(r"\b(?:she|he|her|his|him|they|their)\b|[她他]", re.I)


@dataclass(frozen=True)
class Triple:
    subject: str
    relation: str
    object: str


# Canonical relation names so that "I live in", "住在" and "where do I live" meet on one key.
_RELATION_ALIASES = {
    "名字": "name",
    "姓名": "name",
    "name": "name",
    "called": "name",
    "is called": "name",
    "is named": "name",
    "live in": "lives in",
    "lives in": "lives in",
    "住在": "lives in",
    "住": "lives in",
    "居住在": "lives in",
    "live": "lives in",
    "work at": "works at",
    "works at": "works at",
    "work for": "works at",
    "works for": "works at",
    "work": "works at",
    "在…工作": "works at",
    "located in": "location",
    "is located in": "location",
    "is based in": "location",
    "位于": "location",
    "坐落于": "location",
    "based in": "location",
    "located": "location",
    "based": "location",
    "headquartered in": "headquarters",
    "is headquartered in": "headquarters",
    "总部在": "headquarters",
    "总部位于": "headquarters",
    "总部设在": "headquarters",
    "总部设于": "headquarters",
    "总部": "headquarters",
    "headquarters": "headquarters",
    "hq": "headquarters",
    "headquartered": "headquarters",
    "was born in": "birthplace",
    "born in": "birthplace",
    "出生于": "birthplace",
    "出生在": "birthplace",
    "opens at": "opening time",
    "open": "opening time",
    "opens": "opening time",
    "closes at": "closing time",
    "close": "closing time",
    "closes": "closing time",
    "costs": "price",
    "cost": "price",
    "price": "price",
    "价格": "price",
}

_LEAD_EN = re.compile(
    r"^(?:(?:no|nope|nah|wrong|incorrect|actually|correction|fyi|note|sorry|well|oh|hmm|ugh|uh|that's wrong|that is wrong|"
    r"that's incorrect|that is incorrect|that's not right|that's not it|not quite|not really|update|please note|"
    r"just so you know|my mistake(?: again)?|my bad|oops|whoops|hi there|hello there|hey there|hi|hello|hey|greetings|"
    r"weirdly|oddly|funnily enough|honestly|ok|okay|so|anyway|btw|by the way|heads up|guess what|turns out|"
    r"good (?:morning|afternoon|evening)|(?:the )?(?:correct|right|real) answer(?: is)?)\b[\s,:;.!—–-]*)+",
    re.I,
)
_REMEMBER_EN = re.compile(
    r"^(?:please\s+)?(?:(?:remember|note(?: down)?|keep in mind|don't forget|jot down|make a note|"
    r"note for (?:later|your memory)|for the record)(?:\s+(?:that|this))?[\s,:]+|"
    r"(?:save|store|record)\s+(?:that|this)\b[^:]*?:?\s+)",
    re.I,
)
_LEAD_ZH = re.compile(
    r"^(?:(?:不对|不是的|错了|错|其实|实际上|更正|纠正|注意|抱歉|不好意思|哦|嗯|说明|你说错了|搞错了|你好|您好|嗨|哈喽)[\s，,：:。！!—-]*)+"
)
_REMEMBER_ZH = re.compile(
    r"^(?:请|帮我|麻烦|你)?(?:记住|记得|记一下|记下|记个事儿?|记一条|存一下|存一条|存个|备注一下|请注意)(?:一下)?[\s，,：:]*"
)

_BE = r"(?:is|are|was|were|=|:)"
_VERBS_EN = (
    r"lives in|live in|works at|works for|was born in|is located in|is based in|is headquartered in|"
    r"opens at|closes at|costs|weighs|was founded in|was founded by|was founded on|belongs to|reports to|"
    r"is married to|is called|is named|speaks|teaches|manages|leads|runs|owns|uses|starts at|starts on|"
    r"goes to|attends|studies at|"
    r"ends at|ends on|launches on|launches in|moved to|is due on|is due by|takes place in|takes place on|"
    r"leaves at|leaves on|departs at|departs on|arrives at|arrives on|lands at|lands on|"
    r"meets on|meets at|meets in|is held in|is held on|is made of|is made from|is written in|drives|plays|"
    r"has|have|contains|holds|seats|employs|was built in|was built on|was completed in|was constructed in|"
    r"was established in|was opened in|opened in|was launched in|was launched on"
)
_EN_PEOPLE = (
    r"(?:(?:older |younger |little |big |eldest |youngest )?(?:mother|mum|mom|father|dad|sister|brother|son|daughter|"
    r"wife|husband|partner|boyfriend|girlfriend|fianc[ée]e?|grandmother|grandma|gran|grandfather|grandpa|grandad|"
    r"aunt|uncle|cousin|niece|nephew|friend|best friend|boss|manager|colleague|neighbou?r|flatmate|roommate|"
    r"teacher|mentor|doctor|landlord|landlady|mate|best mate|buddy|pal|flatmate|housemate|classmate|coworker|"
    r"co-worker|stepmother|stepfather|stepmum|stepdad|stepbrother|stepsister|mother-in-law|father-in-law))"
)
_EN_PATTERNS = [
    # First person.
    (re.compile(r"^my name is (?P<obj>.+)$", re.I), lambda m: (USER, "name", m["obj"])),
    (
        re.compile(r"^(?:i am called|call me|i'm called|they call me) (?P<obj>.+)$", re.I),
        lambda m: (USER, "name", m["obj"]),
    ),
    (re.compile(r"^(?i:i am|i'm) (?P<obj>[A-Z][\w'-]*(?: [A-Z][\w'-]*)?)$"), lambda m: (USER, "name", m["obj"])),
    (
        re.compile(
            rf"^i (?P<rel>{_VERBS_EN.replace('lives in|', 'live in|')}|live in|work at|work for) (?P<obj>.+)$", re.I
        ),
        lambda m: (USER, m["rel"], m["obj"]),
    ),
    (
        re.compile(r"^(?:i am|i'm) (?P<obj>\d{1,3})(?: years old| yrs old| y/o)?$", re.I),
        lambda m: (USER, "age", m["obj"]),
    ),
    (re.compile(r"^i weigh (?P<obj>.+)$", re.I), lambda m: (USER, "weight", m["obj"])),
    # the speaker's own verbs, named as a third person's ("I drive a Koral Arrow" -> drives)
    (
        re.compile(r"^i (?:also )?(?P<verb>drive|own|play|ride|teach|manage|lead|coach|use)\s+(?P<obj>.+)$", re.I),
        lambda m: (USER, re.sub(r"(ch|sh)$", r"\1e", m["verb"].casefold()) + "s", m["obj"]),
    ),
    (
        re.compile(r"^(?:i am|i'm) (?P<obj>[\d.,]+ ?(?:m|cm|ft|feet|metres|meters)\b.*?) tall$", re.I),
        lambda m: (USER, "height", m["obj"]),
    ),
    (re.compile(r"^(?:i am|i'm|i come) (?:originally )?from (?P<obj>.+)$", re.I), lambda m: (USER, "from", m["obj"])),
    # "I've got a dog called Pepper", "I have a sister named Ana": the name of the speaker's one
    (
        re.compile(
            r"^(?:i|we)(?: have|'ve got| have got| got| own) (?:a|an|one) (?:\w+ )?(?P<rel>[\w-]+(?: [\w-]+)?) (?:called|named) (?P<obj>.+)$",
            re.I,
        ),
        lambda m: (USER, f"{m['rel']} name", m["obj"]),
    ),
    # "I'm in a band called The Low Tides", "I'm part of a choir named Vox"
    (
        re.compile(
            r"^(?:i am|i'm) (?:in|part of|a member of|on) (?:a|an|the) (?P<rel>[\w-]+) (?:called|named) (?P<obj>.+)$",
            re.I,
        ),
        lambda m: (USER, m["rel"], m["obj"]),
    ),
    (re.compile(r"^(?:i am|i'm) (?P<obj>(?:an?|the) .+)$", re.I), lambda m: (USER, "is", m["obj"])),
    (
        re.compile(
            r"^(?P<subj>i|my [\w-]+(?: [\w-]+)?|[A-Z][\w'-]*(?: [A-Z][\w'-]*)*) works? as (?:an? )?(?P<obj>.+?)$", re.I
        ),
        lambda m: (m["subj"], "job title", m["obj"]),
    ),
    (
        re.compile(r"^my (?P<rel>.+?) (?:is|are) (?:called|named) (?P<obj>.+)$", re.I),
        lambda m: (USER, f"{m['rel']} name", m["obj"]),
    ),
    # "My dad turned 67", "Ernest is 91": a bare number after the copula is an age
    (
        re.compile(
            r"^(?P<subj>(?:[Mm]y|user's) [\w-]+(?: [\w-]+)?|[A-Z][\w'-]*(?: [A-Z][\w'-]*)*) (?:is|turned|just turned|'s|will be) "
            r"(?P<obj>\d{1,3})(?: years old| yrs old| years)?(?: (?:in|on|last|this) (?:[A-Z]\w+|\d{4}))?$",
        ),
        lambda m: (m["subj"], "age", m["obj"]),
    ),
    # "My grandmother was the mayor of Kettleby": as "Lena is the CEO of Halvex", the role is Kettleby's
    (
        re.compile(
            rf"^my (?P<who>{_EN_PEOPLE}) (?:is|are|was|were) the (?P<role>[\w -]+?) (?:of|at) (?P<org>[A-Z].+)$",
            re.I,
        ),
        lambda m: (m["org"], m["role"], owner(f"my {m['who']}")),
    ),
    # "My sister is a nurse", "My mum's a retired teacher": what she is, not her name ("My sister is Ana")
    (
        re.compile(rf"^(?:my|user's) (?P<who>{_EN_PEOPLE}) (?:is|was) (?P<obj>(?:an?) .+)$", re.I),
        lambda m: (f"my {m['who']}", "is", m["obj"]),
    ),
    (re.compile(r"^my (?P<rel>.+?) (?:is|are|was|were) (?P<obj>.+)$", re.I), lambda m: (USER, m["rel"], m["obj"])),
    (
        re.compile(
            rf"^my (?P<who>[\w-]+(?: [\w-]+)?) (?P<rel>{_VERBS_EN}|live in|work at|work for) (?P<obj>.+)$", re.I
        ),
        lambda m: (f"my {m['who']}", m["rel"], m["obj"]),
    ),
    (
        re.compile(r"^(?P<subj>.+?) (?:is|are) (?:called|named) (?P<obj>.+)$", re.I),
        lambda m: (m["subj"], "name", m["obj"]),
    ),
    # "Marcus Bell is my manager now": the value first
    (
        re.compile(r"^(?P<obj>.+?) (?:is|are|was) my (?P<rel>[\w -]+?)(?: now| these days)?(?: instead of .+)?$", re.I),
        lambda m: (USER, m["rel"], m["obj"]),
    ),
    # "Z is the Y of X" (Z a name): "Mei Aro is the CFO of Halvex"
    (
        re.compile(
            r"^(?P<obj>[A-Z][\w'-]*(?: [A-Z][\w'-]*){0,3}) (?:is|was|are|were) (?:the|its|their) (?P<rel>[\w -]+?) "
            r"(?:of|at|for) (?P<subj>[A-Z0-9].*)$"
        ),
        lambda m: (m["subj"], m["rel"], m["obj"]),
    ),
    # "The Y of X is Z"
    (
        re.compile(rf"^(?:the )?(?P<rel>[^,;]+?) of (?P<subj>.+?) {_BE} (?P<obj>.+)$", re.I),
        lambda m: (m["subj"], m["rel"], m["obj"]),
    ),
    # "X's Y is Z"
    (
        re.compile(rf"^(?P<subj>.+?)(?:'s|’s|s'|s’) (?P<rel>.+?) {_BE} (?P<obj>.+)$", re.I),
        lambda m: (m["subj"], m["rel"], m["obj"]),
    ),
    # "X lives in Z" and other verb relations.
    (re.compile(rf"^(?P<subj>.+?) (?P<rel>{_VERBS_EN}) (?P<obj>.+)$", re.I), lambda m: (m["subj"], m["rel"], m["obj"])),
    # "The Acme support hotline is Z": a capitalized name followed by a lower-case relation.
    (
        re.compile(
            rf"^(?:[Tt]he )?(?!(?:The|A|An|This|That|It|Its|Our|Your|My)\b)(?P<subj>[A-Z0-9][\w&.'-]*(?: [A-Z0-9][\w&.'-]*)*) (?P<rel>[a-z][\w -]*?) {_BE} (?P<obj>.+)$"
        ),
        lambda m: (m["subj"], m["rel"], m["obj"]),
    ),
    # "X is Z"
    (re.compile(rf"^(?P<subj>[^,;]{{1,60}}?) {_BE} (?P<obj>.+)$", re.I), lambda m: (m["subj"], "is", m["obj"])),
]

_ZH_VERBS = r"住在|住(?![在院宿址手口])|居住在|位于|坐落于|出生于|出生在|成立于|创立于|总部位于|总部设在|总部设于|总部在|来自|毕业于|就职于|工作于"
ZH_KIN = (
    r"(?:[外表堂]?(?:爸爸|妈妈|爸|妈|哥哥|姐姐|弟弟|妹妹|哥|姐|弟|妹|爷爷|奶奶|公公|婆婆)|外公|外婆|姥姥|姥爷|女儿|儿子|"
    r"老婆|老公|丈夫|妻子|太太|先生|男朋友|女朋友|男友|女友|对象|室友|舍友|同桌|闺蜜|老板|领导|上司|导师|班主任|"
    r"孩子|宝宝|猫|狗|狗狗|猫咪|主管|经理|同事|朋友|好朋友|好友|发小|同学|邻居|房东|师傅|教练|合伙人|未婚妻|未婚夫|"
    r"岳父|岳母|叔叔|阿姨|舅舅|舅妈|姑姑|姑父|姨妈|小姨|婶婶|伯伯|侄子|侄女|外甥|外甥女|孙子|孙女)"
)
_ZH_WORK = {"工作", "上班", "任职", "实习", "供职"}
_ZH_ORG = r"(?:公司|分公司|集团|银行|事务所|研究所|研究院|工作室|工厂|厂|医院|律所|科技|网络|物流|传媒|咨询|影业|证券|基金|报社|电视台)"
# A word for one of the speaker's people ("mum", "女儿"): never a name, whatever a reader made of it.
KIN_WORD = re.compile(rf"(?i:{_EN_PEOPLE})|{ZH_KIN}")
_ZH_PATTERNS = [
    (re.compile(r"^我(?:叫|的名字(?:是|叫))(?P<obj>.+)$"), lambda m: (USER, "name", m["obj"])),
    (re.compile(r"^我(?:今年|已经)?(?P<obj>\d{1,3})(?:岁|周岁)(?:了)?$"), lambda m: (USER, "age", f"{m['obj']}岁")),
    # "我妈今年58了", "我爷爷今年九十了": someone's age (今年 or 岁 says it is one)
    (
        re.compile(
            r"^(?P<subj>user's [^\s，,]+?|我[^\s，,的]{1,4}|(?!我|今年|去年|明年|现在|目前|已经)[\u4e00-\u9fff]{2,4}?)"
            r"(?:今年(?P<a>(?:\d{1,3}|[一二三四五六七八九十]{1,3})(?:岁|周岁)?)|(?P<b>(?:\d{1,3}|[一二三四五六七八九十]{1,3})(?:岁|周岁)))了?$"
        ),
        lambda m: (m["subj"], "age", m["a"] or m["b"]),
    ),
    (re.compile(r"^我老家(?:是|在)?(?P<obj>[^，,的]+?)的?(?:人)?$"), lambda m: (USER, "hometown", m["obj"])),
    (
        re.compile(r"^(?P<subj>[^，,]{1,8}?)对(?P<obj>[^，,]+?)过敏$"),
        lambda m: (m["subj"], "allergic to", m["obj"]),
    ),
    # where the speaker or one of their people works or studies: "我妹妹在华为工作", "我女儿在枫林小学上学"
    (
        re.compile(
            rf"^(?P<subj>我的?(?:{ZH_KIN})?|user's [^\s，,的]{{1,6}}?)(?:现在|目前)?(?:在|于)(?P<obj>[^，,]+?)"
            r"(?P<verb>工作|上班|任职|实习|供职|上学|读书|念书|读大学|上大学|读研|读博|留学)$"
        ),
        lambda m: (m["subj"], "works at" if m["verb"] in _ZH_WORK else "studies at", m["obj"]),
    ),
    (
        re.compile(
            rf"^(?P<subj>我的?(?:{ZH_KIN})?|user's [^\s，,的]{{1,6}}?)(?:现在|目前)?(?:在(?P<org>[^，,]+?))?(?:做|当|担任)(?P<obj>.+)$"
        ),
        lambda m: (m["subj"], "job", m["obj"]),
    ),
    # "我在北辰物流广州分公司": being at an organisation is working there
    (re.compile(rf"^我(?:现在)?在(?P<obj>[^，,]{{2,20}}?{_ZH_ORG})$"), lambda m: (USER, "works at", m["obj"])),
    (re.compile(r"^我(?P<rel>住在|住|在|来自)(?P<obj>.+)$"), lambda m: (USER, m["rel"], m["obj"])),
    (
        re.compile(
            r"^(?P<subj>.+?)(?:每天|周一到周五|平时|工作日|周末)?(?P<obj>(?:早上|上午|中午|下午|晚上)?[\d一二三四五六七八九十两]+点"
            r"(?:半|[\d一二三四五六七八九十]+分?)?)(?P<rel>开门|营业|关门|打烊)$"
        ),
        lambda m: (m["subj"], _ZH_WHEN[m["rel"]], m["obj"]),
    ),
    (re.compile(r"^我的(?P<rel>.+?)(?:是|叫|为)(?P<obj>.+)$"), lambda m: (USER, m["rel"], m["obj"])),
    # "云雀台灯售价329元": a price
    (
        re.compile(
            r"^(?P<subj>[^，,]{1,20}?)的?(?:售价|价格|定价|价钱|卖)(?:是|为|要)?(?P<obj>[\d.,]+\s*(?:元|块钱?|美元|欧元|英镑|万元?)?)$"
        ),
        lambda m: (m["subj"], "price", m["obj"]),
    ),
    # "团建定在5月26号", "面试安排在周三上午九点": when something is
    (
        re.compile(
            r"^(?:我们|咱们)?(?P<subj>[^，,]{1,12}?)(?:定在|安排在|定于|约在|改到|挪到)(?P<obj>[^，,]*?[\d一二三四五六七八九十两][^，,]*)$"
        ),
        lambda m: (m["subj"], "time" if re.search(r"[点:：]|上午|下午|晚上", m["obj"]) else "date", m["obj"]),
    ),
    (re.compile(r"^我(?P<rel>最(?:喜欢|爱)的.+?)(?:是|为)(?P<obj>.+)$"), lambda m: (USER, m["rel"], m["obj"])),
    # "我家养了只仓鼠", "他家养了两只猫": a pet; "他班主任姓司马": a surname
    (
        re.compile(
            r"^(?P<subj>我|user's [^\s，,的]{1,6}?)(?:家|们家)?(?:养了|养着|在养)(?P<obj>(?:[一两二三四五六七八九十\d]+)?(?:只|条|头|匹)?[^，,]+)$"
        ),
        lambda m: (m["subj"], "has pet", re.sub(r"^一?(?:只|条|头|匹)", "", m["obj"])),
    ),
    (
        re.compile(rf"^(?P<subj>我的?(?:{ZH_KIN})?|user's [^\s，,的]{{1,6}}?)姓(?P<obj>[\u4e00-\u9fff]{{1,2}})$"),
        lambda m: (m["subj"], "surname", m["obj"]),
    ),
    # "我开的是一辆白色的极岸S5"
    (
        re.compile(r"^我(?P<verb>开|骑|用|养)的是(?:一[辆台部只条个])?(?P<obj>.+)$"),
        lambda m: (USER, {"开": "drives", "骑": "rides", "用": "uses", "养": "has pet"}[m["verb"]], m["obj"]),
    ),
    # ... and before one's own details: "我电话是138…", "我工位在7楼"
    (
        re.compile(
            r"^我(?P<rel>电话|电话号码|手机|手机号|手机号码|号码|邮箱|电子邮箱|微信|微信号|地址|住址|生日|车牌|车牌号|工号|学号|"
            r"工位|座位|办公室|宿舍|血型|星座|身高|体重)(?:是|为|在|[:：])(?P<obj>.+)$"
        ),
        lambda m: (USER, m["rel"], m["obj"]),
    ),
    # Chinese drops 的 before close people: "我妹妹叫苏沐白" is "我的妹妹叫苏沐白" (是 may be a job: not read)
    (re.compile(rf"^我(?P<rel>{ZH_KIN})叫(?P<obj>.+)$"), lambda m: (USER, m["rel"], m["obj"])),
    (re.compile(r"^user's (?P<rel>[^\s，,]{1,6}?)叫(?P<obj>.+)$"), lambda m: (USER, m["rel"], m["obj"])),  # "她叫…"
    (re.compile(rf"^(?P<subj>.+?)的?(?P<rel>{_ZH_VERBS})(?P<obj>.+)$"), lambda m: (m["subj"], m["rel"], m["obj"])),
    (
        re.compile(r"^(?P<subj>.+?)的(?P<rel>.+?)(?:是|为|叫|在|有|改为|改成)(?P<obj>.+)$"),
        lambda m: (m["subj"], m["rel"], m["obj"]),
    ),
    # "周念安是星河科技的CEO": the value first
    (
        re.compile(r"^(?P<obj>(?!我)[^的，,\s]{1,15}?)(?:是|为|担任)(?P<subj>[^的，,]+?)的(?P<rel>[^的，,]{1,12})$"),
        lambda m: (m["subj"], m["rel"], m["obj"]),
    ),
    (re.compile(r"^(?P<subj>.{1,20}?)(?:是|为)(?P<obj>.+)$"), lambda m: (m["subj"], "是", m["obj"])),
]

# Chinese chat often separates clauses with a space instead of punctuation ("号码换了哈 新的是139…").
_SENTENCES = re.compile(
    r"(?<=[.!?])\s+(?=[A-Za-z\"'“\u4e00-\u9fff])|(?<=[。！？；;])[\s。！？；;]*|\n+|:\s+|：|(?<=[\u4e00-\u9fff])\s+(?=[\u4e00-\u9fff])"
)
_ABBREVIATION = re.compile(r"(?:^|\s)(?:Dr|Mr|Mrs|Ms|Prof|St|Jr|Sr|Mt|No|Co|Inc|Ltd|vs|etc|e\.g|i\.e)\.$")


def sentences(text: str) -> list[str]:
    """Split into sentences, keeping "Dr. Lena Ortiz" and "Acme Co. Ltd" in one piece."""
    out: list[str] = []
    for piece in _SENTENCES.split(text):
        if out and _ABBREVIATION.search(out[-1]):
            out[-1] = f"{out[-1]} {piece}"
        elif piece.strip():
            out.append(piece.strip())
    return out


def clean_statement(text: str) -> str:
    """Strip conversational lead-ins ("No, actually", "记住：") that are not part of the fact."""
    text = text.strip()
    for _ in range(3):
        before = text
        text = _REMEMBER_EN.sub("", _LEAD_EN.sub("", text)).strip()
        text = _REMEMBER_ZH.sub("", _LEAD_ZH.sub("", text)).strip()
        if text == before:
            break
    return text


def is_teaching(text: str) -> bool:
    """A message that asks dilm to remember something ("Remember that …", "记住：…")."""
    t = text.strip()
    if t.endswith(("?", "？")) or re.search(r"[吗嘛][\s。.!！~]*$", t):  # "你记得我叫什么吗？" asks
        return False
    return bool(_REMEMBER_EN.match(t) or _REMEMBER_ZH.match(t)) and len(clean_statement(t)) > 3


def _tidy(value: str) -> str:
    value = value.strip().strip(" \t\"'“”‘’「」『』")
    value = re.sub(r"[\s.。!！?？,，;；:：~\u2600-\u27bf\U0001f000-\U0001faff\ufe0f]+$", "", value)  # "now 🎉"
    value = re.sub(r"\s+(?:right )?now$", "", value, flags=re.I)
    value = re.sub(r"^(?:now|currently|actually|really)\s+", "", value, flags=re.I)
    value = re.sub(r"\s+(?:too|as well)$", "", value, flags=re.I)  # "My sister works at Brightmoor too"
    # "a nurse for ten years before retraining …": how long it held is not part of the value
    value = re.sub(
        r"\s+for (?:\d+|a|an|one|two|three|four|five|six|seven|eight|nine|ten|several|many|a few|some) "
        r"(?:years?|months?|weeks?|days?|decades?)\b.*$",
        "",
        value,
        flags=re.I,
    )
    # "01632 960555 if I ever need it": a clause about the speaker is not part of the value
    value = re.sub(r"\s+(?:if|when|so that|because|in case)\s+(?:i|you|we)\b.*$", "", value, flags=re.I)
    value = re.sub(r"(?:才对|才是对的|就对了|才是)$", "", value)
    value = re.sub(
        r"[,，]?\s*(?:sorry|thanks|thank you|please|btw|by the way|lol|haha|tbh|ok|okay|谢谢|抱歉|哈哈)[\W]*$",
        "",
        value,
        flags=re.I,
    )
    value = re.sub(r"(?<=[\u4e00-\u9fff\w])了$", "", value)  # 改成周五了 → 周五
    value = re.sub(r"(?<=[\u4e00-\u9fff])[呢啊呀哦啦吧嘛哈]+$", "", value)  # 我住在北京呢 → 北京
    return re.sub(r"^(?:[Tt]he|[Aa]n?) (?=[A-Z0-9])", "", value)


def owner(subject: str) -> str:
    """The speaker and the speaker's people as subjects: "I"/"我" -> "user", "my sister"/"我妈妈"/"我的老板" ->
    "user's sister" / "user's 妈妈" / "user's 老板"."""
    s = subject.strip()
    if s.casefold() in {"i", "me", "我", "本人"}:
        return USER
    m = re.fullmatch(
        r"(?i:my) (.+)|我(?![们不没])的?([^的\s]{1,6})|(?:我们|咱们)的?((?:组|公司|部门|团队|班|学校|小区|家|乐队|球队)[^的\s]{0,4})",
        s,
    )
    if m:
        return f"{USER}'s {m.group(1) or m.group(2) or m.group(3)}"
    return s


def canonical_relation(relation: str) -> str:
    rel = normalize(relation)
    rel = re.sub(r"^(?:the|a|an) ", "", rel)
    rel = re.sub(r"^(?:fave|fav|favorite)\b", "favourite", rel)  # one spelling for one relation
    rel = re.sub(r"^最(?:喜欢|爱)的?(?:吃的|喝的)?", "favourite ", rel).strip()  # 最喜欢的颜色 = favourite 颜色
    rel = re.sub(r" (?:right now|now|at the moment|these days|currently)$", "", rel)  # when is not what
    rel = re.sub(
        r"^(.+?)(?:'s|’s| is| are)? (?:name|called|named)$", r"\1 name", rel
    )  # "sister's name" = "sister name"
    return _RELATION_ALIASES.get(rel, rel)


_NOT_SUBJECTS = frozenset(
    "it this that there he she they the answer answer 这 那 它 他 她 答案 不 这个 那个 不对 错了".split()
) | {"the answer"}


# A subject never starts with these: a clause fragment ("Because he was …", "just checking you were …",
# "我开的是…", "应该是九点半"), a pronoun nobody resolved, or a hypothetical ("假如我是老板").
_FUNCTION_START = re.compile(
    r"^(?:before|because|his|her|its|their|our|your|years?|used|always|wait|just|also|so|then|honestly|actually|"
    r"maybe|well|right|ok|okay|yes|no|and|but|or|if|when|while|since|after|as|why|how|what|who|which|where|here|"
    r"these|those|we|you|lol|haha|fun fact|btw|oh|anyway|guess)\b|"
    r"^(?:还|就|也|都|应该|其实|可能|真的|唉|哈|对|嗯|哦|假如|如果|要是|因为|所以|但是|不过|他们|她们|我们|你们|你|"
    r"他|她|它|这|那|有|是|在|刚|又|再|才|反正|总之|然后|顺便|早上|上午|中午|下午|晚上|每天|周末|今天|明天|昨天|后天)|的$",
    re.I,
)


def _valid(subject: str, relation: str, obj: str) -> bool:
    if not subject or not relation or not obj or len(obj) > 120 or len(subject) > 80:
        return False
    if normalize(subject) in _NOT_SUBJECTS or subject.startswith(("不是", "不对")):
        return False
    if subject != USER and not subject.startswith(f"{USER}'s ") and _FUNCTION_START.search(subject):
        return False
    if subject != USER and re.search(r"\b(?:I|me|my)\b|\s(?:and|but)\s", subject):
        return False
    if (
        re.search(r"[,，;；]", subject)
        or re.search(r"[不没]$", subject)
        or re.search(
            r"(?:[,，;；]\s*|\s)(?:and|but)\s+(?:I|my|we|our)\b|[,，;；]\s*(?:and|but|I|my|we|our|you|please|help|can|could|"
            r"what|how|recommend|tell|write|give|我|并且|而且|推荐|帮我|请|你|能不能|可以)",
            obj,
            re.I,
        )
    ):
        return False  # a run-on sentence, not one fact
    if normalize(obj) in _VERDICTS or (normalize(relation) in ("has", "have") and _PARTICIPLE.match(obj)):
        return False  # "The CFO bit is right", "The branch has shut down": no value
    return not re.search(r"\b(?:not|n't)\b|不是|而是", obj)


_VERDICTS = frozenset("right wrong correct incorrect true false fine ok okay 对 错 没错 对的 错的".split())
_PARTICIPLE = re.compile(r"^(?:\w+ed|shut|gone|been|become|got|left|done|made|run|begun|closed down)\b", re.I)


def match(sentence: str) -> Triple | None:
    """The triple of the first pattern that fits the sentence, if it is a sensible one."""
    zh = re.search(r"[\u4e00-\u9fff]", sentence) and not _mostly_latin(sentence)
    # "My car's a Comet", "Her birthday's on 2 November": a contracted "is", not a possessive.
    sentence = re.sub(r"(?<=\w)['’]s (?=(?:an?|the|on|in|at|from|called|named|\d)\b)", " is ", sentence)
    for pattern, build in _ZH_PATTERNS if zh else _EN_PATTERNS:
        m = pattern.match(_tidy(sentence))
        if m:
            subject, relation, obj = (_tidy(x) for x in build(m))
            subject, relation = _of_person(owner(subject), relation)
            return Triple(subject, canonical_relation(relation), obj) if _valid(subject, relation, obj) else None
    return None


def _of_person(subject: str, relation: str) -> tuple[str, str]:
    """ "(user, grandad's number)" is "(user's grandad, number)": the speaker's person holds the attribute."""
    m = re.fullmatch(rf"(?P<who>{_EN_PEOPLE})['’]s (?P<rel>.+)", relation, re.I) if subject == USER else None
    return (f"{USER}'s {m['who']}", m["rel"]) if m else (subject, relation)


def extract(text: str) -> list[Triple]:
    """Triples stated in `text`, one per sentence at most (the first pattern that fits wins). A sentence with
    no fact of its own may still say something about the speaker in a clause ("Hi, my name is Alice and I
    live in Lisbon", "你好，我叫小明"): those first-person clauses are taken too."""
    out: list[Triple] = []
    for sentence in sentences(text):
        sentence = clean_statement(sentence)
        if not sentence or sentence.endswith(("?", "？")):
            continue
        triple = match(sentence)
        if triple is not None:
            out.append(triple)
            continue
        for clause in re.split(r"[,，]\s*(?:and\s+)?|\s+and\s+|并且|而且", sentence):
            triple = match(clean_statement(clause)) if clause.strip() else None
            if triple is not None and triple.subject == USER:
                out.append(triple)
    return out


def _mostly_latin(text: str) -> bool:
    cjk = len(re.findall(r"[\u4e00-\u9fff]", text))
    latin = len(re.findall(r"[A-Za-z]", text))
    return latin > 3 * cjk and not re.search(r"[的是在]", text)


_VALUE_EN = [
    re.compile(
        r"^(?:it|its|it's|they|they're)\s+(?:is |was |are )?(?:called|named|name is|names? are)\s+(?P<new>.+)$", re.I
    ),
    re.compile(
        r"^(?:it|they|she|he)\s+(?:opens?|closes?|starts?|ends?|begins?|costs?|weighs?|lives?|works?|moved|launches|meets|"
        r"is located|is based|is held|takes place|runs)\s+(?:at|in|on|to|for|from)?\s*(?P<new>.+)$",
        re.I,
    ),
    re.compile(
        r"^(?:it(?:'s| is| was)|that(?:'s| is)|the answer is|answer:)?\s*not (?P<old>.+?)[,;]?\s*(?:but|it's|it is|rather)\s+(?P<new>.+)$",
        re.I,
    ),
    re.compile(
        r"^(?:they|we|it|someone)\s+(?:have\s+|has\s+)?(?:replaced|changed|switched|updated|moved|renamed|reset)\s+(?:it\s+|that\s+)?"
        r"(?:with|to|into)\s+(?P<new>.+?)(?:\s+(?:this|last|next)\s+(?:week|month|year)|\s+(?:today|yesterday|recently))?$",
        re.I,
    ),
    re.compile(
        r"^(?:it|that)\s+(?:has been|was|got)\s+(?:changed|moved|renamed|updated|switched)\s+to\s+(?P<new>.+)$", re.I
    ),
    # "B, not A" — after "not A but B", which it would otherwise misread.
    re.compile(
        r"^(?:it's |it is |it was |that's )?(?P<new>[^,]+?(?<!it's)(?<!\bis)(?<!\bwas)),?\s+not (?P<old>[^,]+)$", re.I
    ),
    re.compile(
        r"^(?:it|that|the answer|this)\s+(?:should be|must be|is actually|is really|is now|has changed to|changed to|was changed to|is|was|'s)\s+(?P<new>.+)$",
        re.I,
    ),
    re.compile(r"^(?:it's|that's|its|now it's|now it is)\s+(?P<new>.+)$", re.I),
    re.compile(r"^(?:it was changed to|it changed to|changed to|now)\s+(?P<new>.+)$", re.I),
    re.compile(
        r"^(?:should be|must be|the (?:correct|right) answer is|the answer is|correct answer:|answer:|the correct one is)\s+(?P<new>.+)$",
        re.I,
    ),
]
_VALUE_ZH = [
    re.compile(r"^(?:不是|不对|错了)[\s，,]+(?:是|应该是)?(?P<new>[^，,\s]{1,40})$"),  # "不是 329"
    re.compile(r"^(?:这|那|答案)?不是(?P<old>.+?)[，,、\s]*(?:而是|是|应该是|应为)(?P<new>.+)$"),
    re.compile(r"^(?:现在|目前|如今|已经|后来)+(?:是|在|改成了?|改为|换成了?|变成了?|搬到了?|搬去了?|叫)(?P<new>.+)$"),
    re.compile(r"^(?:已经)?(?:改成了?|换成了?|变成了?|搬到了?|搬去了?)(?P<new>.+)$"),
    re.compile(r"^(?:应该|其实|答案)?是?(?P<new>[^，,。]+?)[，,]\s*(?:而)?不是(?P<old>.+)$"),
    re.compile(
        r"^(?:应该是|应为|应当是|应该改成|应该改为|应改为|要改成|改为|改成|更正为|答案应该是|答案应为|答案是|正确答案是|"
        r"正确的应该是|正确的是|正确的答案是|其实是|实际上是|是)(?P<new>.+)$"
    ),
]


def _clauses(text: str) -> list[str]:
    """The sentences, then each sentence's comma clauses from the last ("They changed it, it's now X")."""
    out: list[str] = []
    for sentence in sentences(text)[:3]:
        out.append(sentence)
        parts = [p for p in re.split(r"[,，]\s*|\s+[—–-]+\s+|[—–]+", sentence) if p.strip()][:8]
        if len(parts) > 1:
            out.extend(", ".join(parts[i:]) for i in range(len(parts) - 1, 0, -1))
    return out


def correction_value(text: str) -> tuple[str, str | None] | None:
    """(new value, negated old value or None) of a correction that gives only a value, else None."""
    raw = text.strip()
    for sentence in _clauses(raw):
        s = _tidy(clean_statement(sentence))
        if not s:  # a pure lead-in ("Hmm no, that's wrong.") carries no value
            continue
        for pattern in (*_VALUE_ZH, *_VALUE_EN):
            m = pattern.match(s)
            if m:
                # "not in Oslo but in Gullhaven": the value is the place, not the preposition.
                new = re.sub(r"^(?:in|at|on)\s+(?=\S)|^在(?=[\u4e00-\u9fff]{2})", "", _tidy(m["new"]), flags=re.I)
                old = re.sub(r"^(?:in|at|on)\s+(?=\S)", "", _tidy(m.groupdict().get("old") or ""), flags=re.I) or None
                if new and len(new) <= 120:
                    return new, old
    return None


_WH = r"(?i:what|who|which|where|when|how much|how many|how long|how old|what time)"
_Q_EN = [
    (
        re.compile(
            r"^(?:what(?:'s| is) my name|who am i|do you (?:know|remember) (?:my name|who i am)|what am i called)\b",
            re.I,
        ),
        lambda m: (USER, "name"),
    ),
    (re.compile(r"^where do i (?P<rel>live|work)\b", re.I), lambda m: (USER, m["rel"])),
    (re.compile(rf"^{_WH}(?:'s| is| are| was| were)? my (?P<rel>.+?)$", re.I), lambda m: (USER, m["rel"])),
    (re.compile(r"^where (?:does|do|did) (?P<subj>.+?) (?P<rel>live|work)$", re.I), lambda m: (m["subj"], m["rel"])),
    (
        re.compile(r"^where is (?P<subj>.+?) (?P<rel>located|based|headquartered)$", re.I),
        lambda m: (m["subj"], m["rel"]),
    ),
    (
        re.compile(r"^(?:when|what time) (?:does|do|will|is) (?:the )?(?P<subj>.+?) (?P<rel>open|close)s?\b.*$", re.I),
        lambda m: (m["subj"], m["rel"]),
    ),
    (re.compile(r"^how much (?:does|do) (?P<subj>.+?) (?P<rel>cost)$", re.I), lambda m: (m["subj"], m["rel"])),
    (
        re.compile(
            r"^(?:when|(?:in )?(?:what|which) year) (?:was|were|did|is) (?:the )?(?P<subj>.+?) (?P<rel>built|constructed|completed|finished|founded|established|created|launched|opened|born)$",
            re.I,
        ),
        lambda m: (m["subj"], _YEAR_OF[m["rel"].casefold()]),
    ),
    (
        re.compile(
            r"^who (?P<rel>founded|created|designed|wrote|built|invented|owns|started) (?:the )?(?P<subj>.+?)$", re.I
        ),
        lambda m: (m["subj"], _VERB_NOUN.get(m["rel"].casefold(), m["rel"])),
    ),
    (
        re.compile(
            r"^how (?P<adj>heavy|old|tall|long|far|big|wide|deep|high|fast|large) (?:is|are|was) (?:the )?(?P<subj>.+?)$",
            re.I,
        ),
        lambda m: (m["subj"], _ADJ_NOUN[m["adj"].casefold()]),
    ),
    (
        re.compile(
            r"^how (?:many|much) (?P<rel>[a-z]+(?: [a-z]+)?) (?:does|do|did|is|are|will) (?:the )?(?P<subj>.+?) (?:have|has|contain|hold|need|take|seat|sell)$",
            re.I,
        ),
        lambda m: (m["subj"], m["rel"]),
    ),
    (
        re.compile(
            r"^(?:which|what) \w+ (?:is|are|was|does) (?:the )?(?P<subj>.+?) (?P<rel>based|located|headquartered)(?: in| at)?$",
            re.I,
        ),
        lambda m: (m["subj"], m["rel"]),
    ),
    (
        re.compile(rf"^{_WH}(?:'s| is| are| was| were)? (?:the )?(?P<rel>[^,]+?) (?:of|for) (?P<subj>.+?)$", re.I),
        lambda m: (m["subj"], m["rel"]),
    ),
    (
        re.compile(rf"^{_WH}(?:'s| is| are| was| were)? (?P<subj>.+?)(?:'s|’s|s'|s’) (?P<rel>.+?)$", re.I),
        lambda m: (m["subj"], m["rel"]),
    ),
    (
        re.compile(
            rf"^{_WH}(?:'s| is| are| was| were)? (?:the )?(?P<subj>[A-Z0-9][\w&.'-]*(?: [A-Z0-9][\w&.'-]*)*) (?P<rel>[a-z][\w -]*?)$"
        ),
        lambda m: (m["subj"], m["rel"]),
    ),
    (re.compile(r"^(?:who|what) (?:is|are|was) (?P<subj>.+?)$", re.I), lambda m: (m["subj"], "is")),
]
_Q_ZH_TAIL = r"(?:是什么|是谁|是多少|是哪里|是哪儿|是哪个.*|是哪.*|在哪里|在哪儿|在哪|叫什么名字|叫什么|有多少|是几.*|是啥|多少钱|几点.*|什么时候.*|呢|吗)?[？?。]?$"
_Q_ZH = [
    (re.compile(r"^(?:我叫什么|我的名字是什么|我是谁)"), lambda m: (USER, "name")),
    (
        re.compile(r"^(?P<subj>.+?)(?:现在)?在(?:哪里|哪儿|哪|什么地方|哪家\S*?|哪个\S*?)(?:工作|上班|任职)"),
        lambda m: (m["subj"], "works at"),
    ),
    (re.compile(r"^我(?P<rel>住在|在|来自)(?:哪里|哪儿|哪|什么地方)"), lambda m: (USER, m["rel"])),
    (re.compile(rf"^我的(?P<rel>.+?){_Q_ZH_TAIL}"), lambda m: (USER, m["rel"])),
    (
        re.compile(r"^(?P<subj>[^的]+?)的(?P<rel>[^的]+?)在(?:哪里|哪儿|哪|什么地方)"),
        lambda m: (m["subj"], m["rel"]),
    ),
    (
        re.compile(rf"^(?P<subj>.+?)的?(?P<rel>{_ZH_VERBS}|在)(?:哪里|哪儿|哪|什么地方|哪个.+|哪一.+)"),
        lambda m: (m["subj"], m["rel"]),
    ),
    (
        re.compile(
            r"^(?P<subj>.+?)(?:每天|早上|晚上|周末|平时)?(?:几点|什么时候|何时|几时)(?P<rel>开门|营业|关门|打烊|开始|结束|出发|到达|发射|上线|开业)"
        ),
        lambda m: (m["subj"], _ZH_WHEN.get(m["rel"], m["rel"])),
    ),
    (re.compile(rf"^(?P<subj>.+?)的(?P<rel>.+?){_Q_ZH_TAIL}"), lambda m: (m["subj"], m["rel"])),
    (re.compile(r"^(?P<subj>.+?)(?:是谁|是什么)[？?]?$"), lambda m: (m["subj"], "是")),
]


_VERB_NOUN: dict[str, str] = {
    "founded": "founder",
    "created": "creator",
    "designed": "designer",
    "wrote": "author",
    "built": "builder",
    "invented": "inventor",
    "owns": "owner",
    "started": "founder",
}
_YEAR_OF: dict[str, str] = {
    "built": "construction year",
    "constructed": "construction year",
    "completed": "construction year",
    "finished": "construction year",
    "founded": "founding year",
    "established": "founding year",
    "created": "founding year",
    "launched": "launch year",
    "opened": "opening year",
    "born": "birth year",
}
_ADJ_NOUN: dict[str, str] = {
    "heavy": "weight",
    "old": "age",
    "tall": "height",
    "long": "length",
    "far": "distance",
    "big": "size",
    "wide": "width",
    "deep": "depth",
    "high": "height",
    "fast": "speed",
    "large": "size",
}
_ZH_WHEN: dict[str, str] = {
    "开门": "opening time",
    "营业": "opening time",
    "关门": "closing time",
    "打烊": "closing time",
}
_AUXILIARY = re.compile(r"\b(?:does|do|did|can|could|will|would|should|is|are|was|were|has|have)\b", re.I)


_ASK_LEAD = re.compile(
    r"^(?:(?:please|can you|could you|would you|do you know|do you remember|do you recall|you remember|"
    r"remind me(?: again)?|tell me(?: again)?|i forgot|i forget|any idea|"
    r"请问|请告诉我|告诉我|提醒我一下|提醒我|你知道|你还记得|你记得|还记得|我忘了)[\s,，:：]*)+",
    re.I,
)
# Spoken Chinese questions end in particles that ask nothing themselves: "几点来着", "叫什么你还记得吗".
_ASK_TAIL_ZH = re.compile(r"(?:来着|你还记得吗|还记得吗|你记得吗|记得吗|你知道吗|知道吗|呢|啊|呀|吧)+$")
# An embedded question ("remind me who my manager is", "do you remember where I work") in direct word order.
_EMBEDDED_BE = re.compile(rf"^(?P<wh>{_WH}) (?P<rest>(?:my|the|our|his|her|their) .+?) (?P<be>is|are|was|were)$", re.I)
_EMBEDDED_DO = re.compile(
    r"^(?P<wh>where|when|what time) (?!(?:do|does|did|is|are|was|were|will|can)\b)(?P<who>.+?) (?P<verb>live|work|study|open|close)s?$",
    re.I,
)
# "面试几点", "年会是哪天", "工位在几楼", "读几年级": what the question word counts names the relation.
_ZH_MEASURE = {
    "几点": "time",
    "什么时候": "time",
    "哪天": "date",
    "几号": "date",
    "哪一天": "date",
    "几月几号": "date",
    "几楼": "floor",
    "几层": "floor",
    "几年级": "grade",
    "几岁": "age",
    "多大": "age",
    "多少钱": "price",
    "多少元": "price",
    "多少块": "price",
    "多高": "height",
    "多重": "weight",
    "多远": "distance",
    "叫什么名字": "name",
    "叫什么": "name",
    "叫啥": "name",
}
_ZH_MEASURE_Q = re.compile(
    r"^(?P<subj>[^，,。？?]{1,20}?)(?:是|在|读|要|得|大概|一般|每天)?(?P<q>"
    + "|".join(sorted(map(re.escape, _ZH_MEASURE), key=len, reverse=True))
    + r")(?:开始|结束|了)?$"
)


def _direct_question(q: str) -> str:
    """The question itself, without asking phrases around it and in direct word order."""
    q = re.sub(r"[\s?？!！.。]+$", "", _ASK_LEAD.sub("", q))
    q = re.sub(r"[\s?？!！.。]+$", "", _ASK_TAIL_ZH.sub("", q)) if re.search(r"[\u4e00-\u9fff]", q) else q
    if m := _EMBEDDED_BE.match(q):
        return f"{m['wh']} {m['be']} {m['rest']}"
    if m := _EMBEDDED_DO.match(q):
        do = "do" if m["who"].casefold() in ("i", "we", "you", "they") else "does"
        return f"{m['wh']} {do} {m['who']} {m['verb']}"
    return q


def parse_question(text: str) -> tuple[str, str] | None:
    """(subject, canonical relation) a question asks about, or None."""
    q = _direct_question(clean_statement(text.strip()))
    patterns = _Q_ZH if re.search(r"[\u4e00-\u9fff]", q) else _Q_EN
    for pattern, build in patterns:
        m = pattern.match(q)
        if m:
            subject, relation = (_tidy(x) for x in build(m))
            subject = owner(subject)
            if subject and relation and _valid(subject, relation, "x") and not _AUXILIARY.search(subject):
                return subject, canonical_relation(relation)
            return None  # a garbled parse is worse than none
    if (m := _ZH_MEASURE_Q.match(q)) and not re.fullmatch(r"[今明昨]天|现在?|这个?|那个?|它|他|她", m["subj"]):
        return owner(_tidy(m["subj"])), _ZH_MEASURE[m["q"]]
    return None


_RENDER = {
    "name": ("{s} is called {o}.", "{s}叫{o}。"),
    "lives in": ("{s} lives in {o}.", "{s}住在{o}。"),
    "works at": ("{s} works at {o}.", "{s}在{o}工作。"),
    "location": ("{s} is located in {o}.", "{s}位于{o}。"),
    "headquarters": ("{s} is headquartered in {o}.", "{s}的总部在{o}。"),
    "birthplace": ("{s} was born in {o}.", "{s}出生于{o}。"),
    "opening time": ("{s} opens at {o}.", "{s}的开门时间是{o}。"),
    "closing time": ("{s} closes at {o}.", "{s}的关门时间是{o}。"),
    "price": ("{s} costs {o}.", "{s}的价格是{o}。"),
    "is": ("{s} is {o}.", "{s}是{o}。"),
    "是": ("{s} is {o}.", "{s}是{o}。"),
    "studies at": ("{s} studies at {o}.", "{s}在{o}上学。"),
    "job": ("{s} works as {o}.", "{s}的职业是{o}。"),
}
_RENDER_USER = {
    "favourite": ("Your favourite is {o}.", "你最喜欢的是{o}。"),
    "habit": ("You have the habit: {o}.", "你的习惯：{o}。"),
    "studies at": ("You study at {o}.", "你在{o}上学。"),
    "job": ("You work as {o}.", "你的职业是{o}。"),
    "name": ("Your name is {o}.", "你叫{o}。"),
    "lives in": ("You live in {o}.", "你住在{o}。"),
    "works at": ("You work at {o}.", "你在{o}工作。"),
    "likes": ("You like {o}.", "你喜欢{o}。"),
    "dislikes": ("You don't like {o}.", "你不喜欢{o}。"),
    "is": ("You are {o}.", "你是{o}。"),
    "是": ("You are {o}.", "你是{o}。"),
    "from": ("You are from {o}.", "你来自{o}。"),
    "age": ("You are {o}.", "你{o}。"),
    "job title": ("You work as {o}.", "你的职业是{o}。"),
    "allergic to": ("You are allergic to {o}.", "你对{o}过敏。"),
    "speaks": ("You speak {o}.", "你会说{o}。"),
}


_ENDED_USER = {
    "lives in": ("You no longer live in {o}.", "你已经不住在{o}了。"),
    "works at": ("You no longer work at {o}.", "你已经不在{o}工作了。"),
    "likes": ("You no longer like {o}.", "你已经不喜欢{o}了。"),
    "dislikes": ("You no longer dislike {o}.", "你已经不讨厌{o}了。"),
    "habit": ("You stopped {o}.", "你已经不{o}了。"),
    "studies at": ("You no longer study at {o}.", "你已经不在{o}上学了。"),
}
# Relations dilm names in English, as a Chinese sentence says them.
_ZH_RELATION = {
    "favourite": "最喜欢的",
    "date": "日期",
    "time": "时间",
    "age": "年龄",
    "birthday": "生日",
    "phone number": "电话号码",
    "email": "邮箱",
    "address": "地址",
    "version": "版本",
    "weight": "体重",
    "height": "身高",
    "name": "名字",
}


def zh_relation(relation: str) -> str:
    """How a Chinese sentence names a relation ("favourite food" -> "最喜欢的food", "date" -> "日期")."""
    head, _, rest = relation.partition(" ")
    if relation in _ZH_RELATION:
        return _ZH_RELATION[relation]
    return _ZH_RELATION[head] + rest if head == "favourite" else relation


def render_ended(subject: str, relation: str, obj: str, lang: str) -> str:
    """A sentence saying a fact no longer holds ("You no longer work at X.", "星河科技的CEO已经不是周念安了。")."""
    zh = lang == "zh"
    if subject == USER and relation in _ENDED_USER:
        return _ENDED_USER[relation][zh].format(o=obj)
    if subject == USER:
        relation = zh_relation(relation) if zh else relation
        return (
            (f"你的{relation}已经不是{obj}了。" if zh else f"Your {relation} is no longer {obj}.")
            if obj
            else (f"你的{relation}已经不是原来的了。" if zh else f"Your {relation} is no longer what it was.")
        )
    return f"{subject}的{relation}已经不是{obj}了。" if zh else f"The {relation} of {subject} is no longer {obj}."


def render_past(fact_subject: str, relation: str, obj: str, until: str | None, lang: str) -> str:
    """A sentence giving an earlier value ("Before: you live in Tromsø (until 2019).")."""
    stated = render(fact_subject, relation, obj, lang)
    if lang == "zh":
        return f"以前：{stated}" + (f"（到{until[:10]}为止）" if until else "")
    return f"Before: {stated[:1].lower()}{stated[1:]}" + (f" (until {until[:10]})" if until else "")


def render(subject: str, relation: str, obj: str, lang: str) -> str:
    """A plain sentence stating the fact, in English ('en') or Chinese ('zh')."""
    zh = lang == "zh"
    if subject == USER:
        zh_default = "你{r}是{o}。" if relation.startswith("favourite") else "你的{r}是{o}。"  # 你最喜欢的颜色是…
        en_t, zh_t = _RENDER_USER.get(relation, ("Your {r} is {o}.", zh_default))
        return (zh_t if zh else en_t).format(r=zh_relation(relation) if zh else relation, o=obj)
    if subject.startswith(f"{USER}'s "):  # "user's sister" -> "your sister" / "你妹妹"
        rest = subject.removeprefix(f"{USER}'s ")
        subject = f"你{rest}" if zh else f"your {rest}"
    if relation in _RENDER:
        en_t, zh_t = _RENDER[relation]
    elif re.fullmatch(_VERBS_EN, relation, re.I):
        en_t, zh_t = "{s} {r} {o}.", "{s}{r}{o}。"
    else:
        en_t, zh_t = "The {r} of {s} is {o}.", "{s}的{r}是{o}。"
    out = (zh_t if zh else en_t).format(s=subject, r=zh_relation(relation) if zh else relation, o=obj)
    return out[:1].upper() + out[1:]
