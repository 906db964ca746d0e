"""The fixed multilingual text set and query/passage pairs used by the fixtures.

Everything here is plain data built deterministically (no randomness from the
environment), so generate_references.py, check_parity.py and full_size_check.py all
see exactly the same strings. Token counts quoted below are for the XLM-R / BGE-M3
tokenizer (including <s> and </s>).
"""
import random

# Sentences the long texts are assembled from: varied languages, scripts and topics,
# so a long text is not one word repeated.
SENTENCE_POOL = [
    "Search engines combine lexical matching with dense vector similarity to rank documents.",
    "The library opens at nine in the morning and closes at six in the evening on weekdays.",
    "Photosynthesis converts light energy into chemical energy stored in glucose molecules.",
    "In 1969 the Apollo 11 mission landed the first humans on the Moon.",
    "A well-tuned index can answer millions of queries per second on commodity hardware.",
    "Die Stadtbibliothek bietet kostenlose Sprachkurse für Erwachsene und Jugendliche an.",
    "Der Rhein fließt durch die Schweiz, Liechtenstein, Österreich, Deutschland und die Niederlande.",
    "La recherche d'information étudie la manière de retrouver des documents pertinents.",
    "Le musée du Louvre est le plus grand musée d'art du monde par sa surface d'exposition.",
    "El aprendizaje automático permite a las computadoras aprender patrones a partir de datos.",
    "A Amazônia abriga a maior biodiversidade de espécies de plantas e animais do planeta.",
    "La pizza napoletana è stata riconosciuta patrimonio immateriale dell'umanità dall'UNESCO.",
    "Het Nederlandse landschap wordt gekenmerkt door polders, dijken en windmolens.",
    "Pociąg do Krakowa odjeżdża z peronu trzeciego za piętnaście minut.",
    "Moskva leží na řece Moskvě a je největším městem v Evropě podle počtu obyvatel.",
    "Санкт-Петербург был основан Петром Первым в 1703 году на берегах Невы.",
    "Українська мова належить до східнослов'янської групи індоєвропейських мов.",
    "Ο Παρθενώνας χτίστηκε τον 5ο αιώνα π.Χ. προς τιμήν της θεάς Αθηνάς.",
    "يعتبر نهر النيل أطول نهر في العالم ويمر عبر إحدى عشرة دولة أفريقية.",
    "תל אביב נוסדה בשנת 1909 והיא מרכז כלכלי ותרבותי חשוב.",
    "गंगा नदी हिमालय से निकलती है और बंगाल की खाड़ी में गिरती है।",
    "বাংলা ভাষা পৃথিবীর সপ্তম বৃহত্তম ভাষা হিসেবে পরিচিত।",
    "தமிழ் உலகின் மிகப் பழமையான மொழிகளில் ஒன்றாகும்.",
    "กรุงเทพมหานครเป็นเมืองหลวงและเมืองที่มีประชากรมากที่สุดของประเทศไทย",
    "Hà Nội là thủ đô của Việt Nam và có lịch sử hơn một nghìn năm.",
    "Bahasa Indonesia digunakan oleh lebih dari dua ratus juta penutur di seluruh nusantara.",
    "长城是古代中国为抵御北方游牧民族而修建的军事防御工程。",
    "人工智能正在改变医疗、教育和交通等多个行业的工作方式。",
    "富士山は日本で最も高い山で、標高は三千七百七十六メートルです。",
    "新幹線は東京と大阪を約二時間半で結んでいます。",
    "한글은 세종대왕이 1443년에 창제한 한국의 고유 문자이다.",
    "İstanbul, Avrupa ile Asya'yı birbirine bağlayan tarihi bir şehirdir.",
    "Suomen kielessä on viisitoista sijamuotoa ja paljon yhdyssanoja.",
    "Magyarország fővárosa Budapest, amelyet a Duna két részre oszt.",
    "Kiswahili ni lugha inayozungumzwa na mamilioni ya watu katika Afrika Mashariki.",
    "Ang Maynila ay ang kabisera ng Pilipinas at isa sa pinakamataong lungsod sa mundo.",
    "Η θερμοκρασία σήμερα θα κυμανθεί μεταξύ 18 και 27 βαθμών Κελσίου.",
    "The recipe needs 250 g of flour, 2 eggs, 100 ml of milk and a pinch of salt 🧂.",
    "Version 2.4.1 fixed a crash when the configuration file contained tab characters.",
    "Quantum computers use qubits that can exist in a superposition of states.",
    "Το ποτάμι και η θάλασσα — a bilingual line mixing Ελληνικά and English.",
    "Mount Everest, known as Sagarmatha in Nepali and Chomolungma in Tibetan, is 8,849 m tall.",
    "Wikipedia contains more than six million articles in its English edition alone.",
    "Les abeilles jouent un rôle essentiel dans la pollinisation des cultures agricoles.",
    "Das Oktoberfest in München zieht jedes Jahr Millionen von Besuchern an 🍺.",
    "Антарктида — самый холодный континент на Земле, покрытый толстым слоем льда.",
    "الذكاء الاصطناعي يساعد الأطباء في تشخيص الأمراض بدقة أكبر.",
    "ChatGPT, BERT und XLM-RoBERTa sind bekannte Sprachmodelle der letzten Jahre.",
]


def long_text(n_sentences, seed):
    """`n_sentences` pool sentences in a seeded shuffled order, numbered, in paragraphs
    of five sentences. Deterministic across Python versions (random.Random with an int
    seed and `shuffle` are stable)."""
    rng = random.Random(seed)
    order = []
    while len(order) < n_sentences:
        block = list(range(len(SENTENCE_POOL)))
        rng.shuffle(block)
        order.extend(block)
    parts = []
    for i, k in enumerate(order[:n_sentences]):
        parts.append(f"({i + 1}) {SENTENCE_POOL[k]}")
    paragraphs = [" ".join(parts[i:i + 5]) for i in range(0, len(parts), 5)]
    return "\n\n".join(paragraphs)


# name -> text. The order is the order of the reference files.
TEXTS = [
    ("english_short", "The quick brown fox jumps over the lazy dog."),
    ("english_paragraph",
     "BGE-M3 produces three kinds of representations at once: a dense vector from the "
     "[CLS] token, lexical weights for sparse retrieval, and multi-vector ColBERT "
     "embeddings for late interaction. Hybrid search mixes their scores."),
    ("german", "Die Würde des Menschen ist unantastbar. Sie zu achten und zu schützen ist "
               "Verpflichtung aller staatlichen Gewalt. Straße, Fußgänger, Größe."),
    ("french", "L'été dernier, nous sommes allés à la plage près de Nice ; c'était "
               "magnifique ! « Où est la gare ? » demanda-t-elle."),
    ("russian", "Москва — столица России, крупнейший по численности населения город страны. "
                "Ёлка, объём, съёмка."),
    ("greek", "Η Αθήνα είναι η πρωτεύουσα της Ελλάδας και μία από τις αρχαιότερες πόλεις του κόσμου."),
    ("arabic_rtl", "اللغة العربية هي إحدى أكثر اللغات انتشاراً في العالم، ويتحدثها أكثر من ٤٠٠ مليون شخص."),
    ("hebrew_rtl", "ירושלים היא עיר עתיקה עם היסטוריה ארוכה ומרתקת. שָׁלוֹם עֲלֵיכֶם!"),
    ("hindi", "भारत एक विशाल देश है जिसमें अनेक भाषाएँ बोली जाती हैं। हिन्दी देवनागरी लिपि में लिखी जाती है।"),
    ("thai", "ภาษาไทยเป็นภาษาที่ไม่มีการเว้นวรรคระหว่างคำ ทำให้การตัดคำเป็นเรื่องท้าทาย"),
    ("chinese", "北京是中华人民共和国的首都，也是全国的政治和文化中心。繁體字：臺灣、圖書館。"),
    ("japanese", "東京は日本の首都であり、世界で最も人口の多い都市圏の一つです。カタカナ、ひらがな、ｶﾀｶﾅ。"),
    ("korean", "서울은 대한민국의 수도이며 한강이 도시를 가로질러 흐른다. 안녕하세요!"),
    ("emoji", "I love pizza 🍕🔥 and my family 👨‍👩‍👧‍👦! Thumbs up 👍🏽, flags 🇩🇪 🇯🇵 🇺🇳, "
              "rainbow flag 🏳️‍🌈, keycap 1️⃣ and a heart ❤️."),
    ("combining_marks", "Cafe\u0301 de\u0301ja\u0300 vu, nai\u0308ve re\u0301sume\u0301 — "
                        "precomposed: café déjà vu."),
    ("vietnamese", "Tiếng Việt có sáu thanh điệu: ngang, huyền, sắc, hỏi, ngã, nặng. "
                   "Ti\u00ea\u0301ng Vi\u00ea\u0323t vi\u00ea\u0301t b\u0103\u0300ng ch\u01b0\u0303 Qu\u00f4\u0301c ng\u01b0\u0303."),
    ("trailing_whitespace", "This sentence ends with spaces and a tab   \t"),
    ("trailing_newline", "This line ends with a newline.\n"),
    ("only_whitespace", "   \t \n  "),
    ("empty", ""),
    ("tabs_multiple_spaces", "Name\tAge\t\tCity\nAlice    30     Berlin\n  Bob\t  25  \t Paris"),
    ("literal_special_tokens", "Literal markup: <s> opens, </s> closes, <pad> pads, <unk> is "
                               "unknown and <mask> masks; glued<mask>here and <s></s>twice."),
    ("masks", "<mask> is the capital of <mask>. The <mask> sat on the <mask>, <mask><mask>!"),
    ("zero_width", "zero\u200bwidth\u200cnon\u200djoiner\ufeffbyte-order\u2060word\u200b"),
    ("full_width", "ＦＵＬＬＷＩＤＴＨ　ｔｅｘｔ：　１２３４５！？　ＡＢＣ"),
    ("code", "def encode(text: str) -> list[int]:\n    return tokenizer(text)[\"input_ids\"]  # Python"),
    ("urls_numbers", "Visit https://example.com/path?q=1&lang=en or mail test@example.org; "
                     "price $1,234.56 (±3%), 2024-05-17T12:30:00Z."),
    ("single_word", "Hello"),
    ("single_char", "a"),
    ("punctuation_only", "...!?;:--«»"),
    ("line_breaks", "first line\r\nsecond line\rthird line\u2028fourth\u2029fifth"),
    ("nbsp", "non\u00a0breaking\u00a0space and narrow\u202fno-break\u2009thin space"),
    ("mixed_languages", "English, Deutsch, Français, Русский, 中文, 日本語, 한국어, العربية, "
                        "עברית, हिन्दी — all in one sentence."),
    ("spanish", "¿Dónde está la biblioteca? Está al lado de la estación de tren."),
    ("uppercase_accents", "ÉCOLE NORMALE SUPÉRIEURE À PARIS ET ÇA VA BIEN"),
    ("math_symbols", "∑ᵢ xᵢ² ≤ ∞, α→β, ∂f/∂x ≈ 0.5, ℝⁿ, ½ + ¼ = ¾"),
    ("leading_whitespace", "   \tleading whitespace then text"),
    ("turkish", "İstanbul'da ılık bir akşam; IĞDIR, ŞİŞLİ ve çiçekçi."),
    ("compatibility_chars", "ﬁnance ﬂow ① ② ㈱ ㎏ ™ Ⅻ ﬀ"),
    ("long_700", long_text(36, seed=7)),
    ("long_1500", long_text(76, seed=11)),
]

TEXT_BY_NAME = dict(TEXTS)

# Short queries paired with passages from TEXTS (by name). Scores use the query and the
# passage encoded separately at max_length 8192.
SCORE_PAIRS = [
    # mostly lexical overlap (non-zero sparse scores) ...
    ("Москва столица России", "russian"),
    ("Würde des Menschen", "german"),
    ("la plage près de Nice", "french"),
    ("北京 首都 政治", "chinese"),
    ("東京 首都 人口", "japanese"),
    ("서울 대한민국 수도", "korean"),
    ("Αθήνα πρωτεύουσα Ελλάδας", "greek"),
    ("اللغة العربية انتشاراً", "arabic_rtl"),
    ("ירושלים עיר עתיקה", "hebrew_rtl"),
    ("भारत भाषाएँ हिन्दी", "hindi"),
    ("ภาษาไทย ตัดคำ", "thai"),
    ("pizza 🍕 family 👨‍👩‍👧‍👦", "emoji"),
    ("café déjà vu", "combining_marks"),
    ("Tiếng Việt thanh điệu", "vietnamese"),
    ("quick brown fox", "english_short"),
    ("hybrid search dense sparse ColBERT", "english_paragraph"),
    ("search engines dense vector Louvre", "long_700"),
    ("Apollo Moon landing 1969", "long_1500"),
    ("Rhein Schweiz Niederlande Quantum", "long_1500"),
    ("<mask> token masks <pad>", "literal_special_tokens"),
    ("<mask> the capital", "masks"),
    ("zero width joiner", "zero_width"),
    ("ＦＵＬＬＷＩＤＴＨ １２３４５", "full_width"),
    ("tokenizer input_ids Python", "code"),
    ("price mail example.com", "urls_numbers"),
    ("Hello", "single_word"),
    ("İstanbul akşam", "turkish"),
    ("finance flow", "compatibility_chars"),
    ("biblioteca estación de tren", "spanish"),
    # ... cross-lingual or degenerate pairs
    ("What is the capital of Russia?", "russian"),
    ("capital city", "chinese"),
    ("", "english_short"),
    ("anything at all", "empty"),
    ("whitespace", "only_whitespace"),
]
