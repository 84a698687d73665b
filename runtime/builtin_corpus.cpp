// Original text written for Tandem (see builtin_corpus.h). Split into several literals because
// ISO C++ only promises string literals of 65,535 characters (-Woverlength-strings).
#include "runtime/builtin_corpus.h"

#include <string>

namespace tandem {
namespace {

constexpr const char* k_parts[] = {
R"corpus(On Computing

A computer is a patient machine. It does exactly what it is told, one small step after another, and it never gets bored. When people say that a program is slow, they usually mean that it is doing far more steps than it needs to, or that it is waiting: waiting for memory, waiting for a disk, waiting for a message from another machine on the other side of the world. Most of the art of programming is learning where the time goes.

Inside the processor there are registers, which hold a handful of numbers, and caches, which hold recent copies of memory. Reading a value from a register takes less than a nanosecond. Reading it from the first level of cache takes about one nanosecond, from the last level perhaps ten, and from main memory close to a hundred. A disk that spins takes millions of nanoseconds to find a block. These numbers change every few years, but the shape of the ladder stays the same: small and fast near the core, large and slow far away.

A good program keeps the data it needs close at hand. It reads memory in straight lines rather than jumping around, because the hardware fetches whole lines of sixty-four bytes at a time and guesses which line will be wanted next. It reuses what it has already loaded. It avoids asking the operating system for help in the middle of a tight loop. None of this is magic; it is simply respect for the machine.

Numbers inside a computer are stored in binary. An eight-bit byte can hold 256 different values, from 0 to 255. A 32-bit integer can count past four billion. Floating-point numbers trade exactness for range: a 32-bit float keeps about seven decimal digits, while a 16-bit half-precision float keeps only three, which is enough for many of the weights in a neural network. When we squeeze numbers further, into eight or even four bits, we call it quantization. A block of thirty-two weights shares one scale, and each weight becomes a small integer. The model gets smaller and faster, and if we are careful it barely gets worse.

A language model reads text as a sequence of tokens. A token might be a whole word, like "the", a piece of a word, like "ing", or a single byte when nothing better fits. The tokenizer splits the text, the model turns each token into a vector, and then layer after layer of attention and feed-forward blocks mix those vectors together. At the end, the model produces a score for every token in its vocabulary, and a sampler picks the next one. Then the whole process repeats, one token at a time, until the answer is finished.

Some models are dense: every weight takes part in every step. Others are sparse, built from many small experts, and a router decides which few experts should handle each token. A mixture of experts can hold a great deal of knowledge while only touching a small fraction of it for any single word. That makes it a good fit for ordinary computers, where memory is plentiful but bandwidth is scarce. If the experts that are needed next can be guessed early, they can be fetched while the machine is still busy with something else.

Parallel programs are harder to write than sequential ones. Two threads that share a counter must agree on who updates it first, or the count will be wrong. Locks make the agreement explicit, but a lock held too long turns a parallel program back into a sequential one. Queues, atomic operations and careful division of work help. The best parallel code often looks boring: each worker gets its own slice of the data, does its job, and hands back a result without talking to anyone else.

Graphics processors take this idea to the extreme. A GPU runs thousands of small threads at once, grouped into workgroups that share a little fast memory. It is wonderful at doing the same arithmetic on many numbers, and clumsy at making decisions. Programs for it are written as shaders, compiled ahead of time, and launched with commands that are recorded into buffers and submitted to a queue. The processor and the graphics card each go about their work and meet again at a fence or a semaphore.

Testing is how we learn whether any of this works. A fast routine is checked against a slow, obvious one that is easy to read and hard to get wrong. We try sizes that are smaller than a tile, exactly a tile, and a little larger; we try odd lengths and empty inputs. When the two answers disagree, we want the test to tell us where, not merely that something failed. A test that can never fail is worse than no test at all, because it gives false comfort.

Errors deserve the same care. A message such as "invalid file" helps nobody. A message such as "model.gguf: tensor blk.7.ffn_up.weight: data at byte offset 1048576 runs past the end of the file" tells the reader what went wrong and where to look. Good software expects bad input and answers it calmly, without crashing.
)corpus",
R"corpus(Machines and Tools

The first machines were levers and wheels. A lever lets a small force move a heavy stone, as long as you are willing to push it a long way. A pulley does the same with rope. Gears trade speed for strength: a small gear turning a large one makes the large one slower but harder to stop. Every clock, bicycle and washing machine is a careful arrangement of these old ideas.

Steam changed everything. Water heated in a closed boiler pushes on a piston, the piston turns a crank, and the crank turns a wheel. Early engines wasted most of their coal, and some of them exploded. Engineers learned to measure pressure, to add safety valves, and to keep records of every failure so that the next design would be better. That habit of measuring and writing things down is perhaps the most important invention of the whole period.

Electric motors are quieter and simpler. A current flowing through a coil in a magnetic field feels a push; arrange the coils in a circle and switch the current at the right moments, and the shaft spins. Motors run fans, pumps, trains and the tiny vibrating weight inside a telephone. A generator is the same machine run backwards: turn the shaft and current flows out.

A workshop is a good place to learn patience. Measure twice and cut once. Clamp the piece before you drill it. Keep the blades sharp, because a dull blade needs more force and slips more easily. Put every tool back where it belongs, so that the next person can find it. These rules sound old-fashioned, but they describe good engineering of any kind, including software.

Modern factories are full of robots that weld, paint and lift. They are fast and precise, but they only know what they were programmed to do. If a part arrives slightly rotated, a simple robot will miss it. Cameras and sensors help, and so does clever design: a part that can only fit one way cannot be put in backwards. Engineers call this mistake-proofing, and it works for people as well as for machines.

Bridges are machines that are meant to stand still. A beam bends under a load, with the top squeezed and the bottom stretched. An arch turns the load into pure compression, which stone handles well. A suspension bridge hangs its deck from cables that are pulled tight between tall towers. Wind, traffic and temperature all push and pull on a bridge, and a good design allows for each of them, with joints that let the steel grow in summer and shrink in winter.

Cars, trains, ships and aircraft each solve the same problem in different ways: how to carry people and goods from one place to another using as little energy as possible. A train rolls on smooth steel wheels and loses very little to friction. A ship floats, so it needs no energy to hold itself up, only to push through the water. An aircraft must hold itself up with its wings, which is expensive, but it can go straight over mountains and oceans at eight hundred kilometres per hour.

The humble bicycle may be the most efficient machine ever built for a single person. A rider on a flat road can travel twenty kilometres in an hour on the energy of a sandwich. The frame is a pair of triangles, stiff and light. The chain runs over gears that let the rider choose between climbing slowly and cruising quickly. When something breaks, it can usually be mended at the side of the road with a few simple tools.
)corpus",
R"corpus(Notes on Nature

Early in the morning the forest is loud. Birds call from every direction, each species with its own pattern: a few clear whistles, a rapid trill, a harsh scolding chatter. By midday most of them fall silent, and the insects take over. In the evening the chorus returns for a while before the owls begin.

A single old oak can support hundreds of kinds of living things. Beetles bore into its bark, caterpillars eat its leaves, jays bury its acorns and forget some of them, which is how new oaks get planted far from their parents. Fungi wrap their threads around the roots and trade minerals from the soil for sugar from the leaves. When the tree finally falls, it feeds the forest for another century as it slowly rots.

Rivers shape the land they run through. In the mountains they are fast and narrow, cutting deep valleys and rolling boulders along their beds. Lower down they slow, widen and wander in long loops, dropping sand and silt wherever the current weakens. A flood spreads fresh soil over the plain, which is why so many farms and cities grew up beside rivers, and why so many of them have been flooded.

The weather comes from the sun heating the earth unevenly. Warm air rises near the equator and sinks farther north and south, and the spinning of the planet bends these flows into the great wind belts. Water evaporates from the oceans, rises, cools and condenses into clouds. A cloud is not a solid thing but a constant process: droplets forming at one edge and evaporating at another while the whole shape drifts across the sky.

In winter the lake freezes from the top down. Water is densest at about four degrees Celsius, so the coldest water floats, and ice forms on the surface where it insulates the water below. Fish spend the winter in the dark, slow and calm, near the bottom. If ice sank, lakes would freeze solid from the bottom up, and very little could survive in them.

Bees visit flowers for nectar and carry pollen from one plant to the next. A single hive can send foragers several kilometres in every direction. When a forager finds a rich patch of flowers, she returns and dances on the comb: the angle of the dance points the way relative to the sun, and its length tells the distance. Other bees follow the dance and find the flowers themselves.

Mountains look permanent, but they are always changing. Frost splits rock, rain washes the pieces downhill, and glaciers grind valleys into broad U shapes. At the same time, the slow collision of continental plates pushes some ranges higher by a few millimetres each year. The peaks we see are the balance between building up and wearing down.

The sea covers most of the planet and we have explored only a small part of it. Near the surface, sunlight feeds tiny drifting plants that produce much of the oxygen we breathe. Far below, in darkness and cold, strange animals make their own light, and whole communities live around hot springs on the ocean floor, drawing their energy from chemistry rather than from the sun.

Look closely at almost anything alive and you will find cooperation alongside competition. Lichens are partnerships between fungi and algae. Our own bodies carry more bacterial cells than human ones, and many of those bacteria help us digest our food. Nature is not only a struggle; it is also a vast, tangled web of trades and favours.
)corpus",
R"corpus(In the Kitchen

Good cooking starts before the stove is lit. Read the whole recipe first. Wash and chop the vegetables, measure the spices, and set everything out in small bowls. Cooks call this mise en place, "everything in its place", and it turns a frantic evening into a calm one.

A simple tomato sauce takes about forty minutes. Warm three tablespoons of olive oil in a wide pan over medium heat. Add one chopped onion and a pinch of salt, and cook it gently for ten minutes until soft and golden, stirring now and then. Add two cloves of garlic, sliced thin, and cook for one more minute. Pour in 800 g of tinned tomatoes, crush them with a wooden spoon, and let the sauce bubble slowly for twenty to twenty-five minutes. Taste it. Add salt, a little pepper, and perhaps a few torn basil leaves at the end.

Bread needs only flour, water, salt and yeast, yet it rewards years of practice. Mix 500 g of strong flour with 350 ml of warm water, 10 g of salt and 7 g of dried yeast. Knead the dough for ten minutes, until it is smooth and springs back when pressed. Cover it and leave it somewhere warm for an hour, until it has doubled in size. Shape it into a round loaf, let it rise again for forty-five minutes, then bake it at 220 °C for about thirty-five minutes. A loaf is done when it sounds hollow as you tap the bottom.

Rice is easy once you know the ratio. For long-grain rice, rinse one cup of grains until the water runs clear, then add one and a half cups of water and a pinch of salt. Bring it to the boil, cover the pan tightly, turn the heat down as low as it will go, and wait fifteen minutes. Take the pan off the heat and leave it covered for another five. Fluff the rice with a fork and serve.

Soup is a good way to use whatever is left in the vegetable drawer. Soften an onion, a carrot and a stick of celery in butter. Add potatoes, leeks, a handful of lentils or a few ripe tomatoes. Cover with stock, simmer until everything is tender, and season well. Some people blend their soup smooth; others like it chunky. Both are right.

Salt is the most important seasoning. A dish that tastes flat usually needs salt, not more spice. Acid comes next: a squeeze of lemon or a splash of vinegar can wake up a heavy stew. Fat carries flavour and makes food feel rich. Heat, whether from chilli or black pepper, adds excitement. Learning to balance these four is most of what separates a good cook from an anxious one.

Eggs deserve respect. A boiled egg takes six minutes for a soft, runny yolk and nine or ten for a firm one. Scrambled eggs should be cooked slowly, over low heat, and taken off the stove while they still look a little wet, because they keep cooking on the plate. An omelette, on the other hand, wants a hot pan and quick hands: thirty seconds of stirring, a moment to set, then fold and slide it out.

A pancake recipe for four people: 200 g of flour, 2 eggs, 300 ml of milk, a pinch of salt and a tablespoon of melted butter. Whisk the eggs and milk, add the flour a little at a time, and let the batter rest for half an hour. Heat a lightly oiled pan, pour in a ladle of batter, tilt the pan so that it spreads thin, and cook for about a minute on each side. Serve with lemon and sugar, jam, or honey.

Cleaning up is part of cooking. Wash the knives by hand and dry them at once. Soak sticky pans while you eat. Wipe the counters, sweep the floor, and take out the rubbish. A clean kitchen in the evening makes for a cheerful breakfast the next morning.
)corpus",
R"corpus(Travelling

The train left the city a few minutes after seven. For the first half hour there was nothing to see but warehouses, car parks and the backs of houses, their little gardens full of washing and bicycles. Then the buildings thinned out, the fields began, and the morning mist lay in long white bands along the river.

Travelling slowly changes the way a journey feels. On a plane, you leave one airport and arrive at another that looks almost the same, and the country in between is only a pattern of clouds. On a train, you watch the landscape change hour by hour: flat farmland gives way to hills, the houses change their shape and colour, and the voices in the carriage change their accent.

At the border town there was a two-hour wait for the connection, so I walked up to the old fortress above the station. From the top of the walls you could see three valleys meeting, the roofs of the town below, and the road winding away towards the mountains. A woman selling apricots at the gate told me that the fortress had changed hands eleven times in five hundred years. "Now it belongs to the tourists," she said, and laughed.

A good traveller packs light. Two shirts, one warm jumper, a rain jacket, comfortable shoes, a small bag of medicines and a notebook will carry you a long way. Everything else can be bought on the road if you need it. The heavier the bag, the less you want to wander, and wandering is the whole point.

Maps are wonderful, but it is worth getting lost now and then. The best meal of my trip was in a village I had never heard of, where I got off the bus by mistake. There was one café on the square, with four tables and a handwritten menu. The owner cooked whatever she had bought that morning: a thick bean soup, bread still warm from the oven, grilled peppers, and a slice of walnut cake. It cost less than a sandwich at the station.

Learning a few words of the local language opens many doors. "Hello", "please", "thank you", "excuse me" and "how much is it?" are enough to begin with. People forgive mistakes, and most of them are pleased that you tried. Numbers are useful too: being able to read a price or a platform number saves a lot of confusion.

The night bus to the coast left at 23:40 and arrived at 06:15. I slept badly, woke up with a stiff neck, and walked down to the harbour as the fishing boats were coming in. Gulls screamed overhead. Men in rubber boots were hosing down the decks and stacking boxes of silver fish on the quay. By eight o'clock the market was full, and by ten it was empty again, as if nothing had happened.

Coming home is part of travelling too. Your own street looks different for a few days: smaller, quieter, more familiar and more strange at the same time. Then the feeling fades, and you start to plan the next journey.
)corpus",
R"corpus(A Conversation About Computers

"Can I ask you something about computers?" said Maya.

"Of course," said her grandfather. "Though I may not know the answer."

"Why does my laptop get slower when I open lots of tabs?"

"Each tab needs some memory. When the memory is full, the computer starts moving things it has not used for a while onto the disk, and bringing them back when you need them. The disk is much slower than memory, so everything waits."

"So more memory would make it faster?"

"Only if memory is the problem. Sometimes the processor is busy, sometimes the network is slow. A good engineer measures first and guesses later."

"How do you measure?"

"You time things. You run the same job several times, because the first run is often slower while the caches warm up, and you look at the middle result rather than the best or the worst. Then you change one thing and measure again."

"That sounds like a science experiment."

"It is exactly that. Make a guess, test it, write down what happened. If you only change one thing at a time, you know which change made the difference."

Maya thought about this for a moment. "And what about the chat programs? How do they know what to say?"

"They have read an enormous amount of text, and from it they learned which words tend to follow which. When you type a question, the program turns it into numbers, runs those numbers through many layers of arithmetic, and gets a score for every possible next word. Then it picks one, adds it to the text, and does the whole thing again."

"One word at a time? That must be slow."

"It would be, if the computer were not so fast. But you are right that it is a lot of work. That is why people try so hard to make it cheaper: smaller numbers, cleverer memory, and only waking up the parts of the model that are needed."

A Conversation at the Market

"Good morning! How much are the tomatoes?"

"Three euros a kilo. These ones are from my own garden, picked yesterday."

"They smell wonderful. I'll take a kilo, please. And do you have any basil?"

"Yes, here. One euro a bunch. Are you making sauce?"

"I am. My friend is coming for dinner tonight."

"Then take some garlic too. Two heads for a euro fifty."

"All right. What does that come to?"

"Three, plus one, plus one fifty... five euros fifty."

"Here is ten."

"And four fifty change. Enjoy your dinner!"

"Thank you, see you next week."

A Conversation on the Phone

"Hello, is that the bicycle shop?"

"Yes, it is. How can I help?"

"My back wheel is bent, and the brake rubs on it. Could you fix it this week?"

"Bring it in on Thursday morning and we'll have it ready by five. If the rim is badly bent we may need to replace it, but we'll call you first."

"How much would a new rim cost?"

"Somewhere between thirty and forty-five euros, plus labour. Truing the old one is cheaper: about fifteen."

"Great. I'll see you on Thursday. My name is Tom, T-O-M."

"Thanks, Tom. See you then."
)corpus",
R"corpus(Numbers, Lists and Punctuation

Some facts, roughly: a year has 365 days (366 in a leap year), 52 weeks and 12 months. A day has 24 hours, 1,440 minutes and 86,400 seconds. Light travels about 299,792 kilometres per second. The earth is about 12,742 km across; the moon is about 3,474 km across and, on average, 384,400 km away.

Powers of two: 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536. A kibibyte is 1024 bytes; a mebibyte is 1,048,576 bytes; a gibibyte is 1,073,741,824 bytes.

Simple sums: 2 + 2 = 4; 7 * 8 = 56; 100 / 4 = 25; 3.5 - 1.25 = 2.25; 9^2 = 81; the square root of 144 is 12. One third is about 0.333, and pi is about 3.14159. Ten per cent of 250 is 25, and 15% of 80 is 12.

Dates and times: the meeting is on 2024-03-15 at 09:30; the train leaves at 17:45 from platform 4B; the shop is open Monday-Friday, 8 a.m. to 6 p.m.; the concert starts at 19:30 and ends at about 22:00.

A shopping list:
- 2 kg potatoes
- 1 dozen eggs
- 500 g butter
- 3 lemons
- 1 loaf of bread
- milk (semi-skimmed, 2 litres)

Steps to set up a new computer:
1. Unpack it and check that nothing is damaged.
2. Connect the power, the screen and the keyboard.
3. Turn it on and follow the instructions on the screen.
4. Install the updates; restart if asked.
5. Make a backup before you do anything else!

Questions and answers. What time is it? It's a quarter past three. Where are you going? To the library, then home. Why? Because the book is due back today. Really? Yes, really: it's already two days late...

Punctuation shows how a sentence should be read. A comma marks a small pause, a full stop ends the thought, and a question mark asks. A semicolon joins two related ideas; a colon introduces an example: like this one. Brackets (such as these) hold an aside, and quotation marks show that someone "said" something. An apostrophe marks possession, as in the cat's bowl, or a missing letter, as in don't, can't, won't, it's, we're, they've, I'm, you'll and she'd. Dashes - or em dashes — set off a sudden turn. Ellipses trail away...

Code looks different again: if (x > 0 && y < 10) { total += x * y; } else { total = 0; } and a path such as /usr/local/bin/tandem or C:\Program Files\Tandem. An e-mail address looks like someone@example.com, a web address like https://example.org/docs/index.html?page=2#top, and a version number like v1.2.3. Some symbols: # $ % & * + = < > @ [ ] { } | ~ ^ ` \ /.

Temperatures: water freezes at 0 °C (32 °F) and boils at 100 °C (212 °F). A comfortable room is about 20-22 °C. A hot summer day might reach 35 °C; a cold winter night might fall to -15 °C.

Money: the ticket cost €12.50, the coffee $3.20, the book £8.99, and the meal ¥1,200. Prices rise and fall, but a careful shopper compares them.

A few words from other languages appear in everyday English: café, naïve, façade, résumé, déjà vu, piñata, über, smörgåsbord, jalapeño and crème brûlée. Travellers also meet greetings such as hola, bonjour, ciao, hallo, olá, привет, こんにちは, 你好 and 안녕하세요, and signs such as "Ausgang", "Salida" and "出口".
)corpus",
R"corpus(The Lighthouse Keeper

For thirty-one years the lighthouse on the point was kept by a man named Elias Brand. Every evening, half an hour before sunset, he climbed the ninety-seven steps of the spiral stair, cleaned the great lens with a soft cloth, trimmed the wick, and lit the lamp. Every morning he put it out again, wrote the hours in the log book, and noted the weather: wind from the south-west, force five; visibility good; a fishing boat passing at dawn.

People in the village thought the work must be lonely, but Elias did not find it so. He had the gulls and the seals, the changing sea, and the ships that passed far out on the horizon, each one a small story he would never hear the end of. In the long winter evenings he read books that the postman brought him, one box every month, and he mended clocks for the villagers, which he said was much like keeping a lighthouse: a matter of small, regular attention.

When the light was finally made automatic, the engineers came with a machine that would switch itself on at dusk and off at dawn, and a radio that would call for help if anything failed. They were polite and a little embarrassed. Elias showed them everything: the lens, the clockwork that turned it, the spare wicks, the log books going back to the day the tower was built. Then he packed his books and his tools and moved into a small house in the village, where he could still see the beam sweep across the water every night.

He kept writing in a notebook all the same. "Wind north-east, cold. Light working. Ship passing, lights green and white, heading south." Nobody asked him to. He simply liked to know that someone was watching.

The Garden in Spring

In March the garden wakes up slowly. The first snowdrops push through the frost, then the crocuses, purple and yellow, open in the thin sunshine. By April the apple tree is covered in pink blossom and the bees are back. It is time to dig the beds, spread the compost that has been rotting quietly all winter, and sow the first seeds: peas, radishes, lettuce and broad beans.

Gardening teaches the same lesson as cooking and programming: you cannot hurry everything. Seeds need warmth and water and time. Some of them fail, and you never quite know why. The snails eat the lettuces; the pigeons eat the peas. You try again, a little differently, and keep notes. By midsummer there are more beans than anyone can eat, and you find yourself giving bags of them away to neighbours who did not ask for them.

A Short Guide to Writing Clearly

Say what you mean in as few words as you need, and no fewer. Put the most important idea first. Use plain words where plain words will do: "use" rather than "utilise", "help" rather than "facilitate". Prefer the active voice: "the program reads the file" is clearer than "the file is read by the program". Cut words that add nothing, such as "very", "really" and "basically". Read your work aloud; if you stumble, your reader will too.

When you explain something technical, give an example. A definition tells the reader what a thing is; an example shows them. "A cache keeps recent results so that they can be reused" is a definition. "The first time you open the page it takes two seconds; the second time it takes a tenth of a second, because the images are already stored on your computer" is an example, and most people remember it better.

Finally, be kind to the person who will read your words later. It may be a colleague, a stranger, or yourself in a year's time, tired and in a hurry. Leave them a clear trail: what you did, why you did it, and what is still left to do.
)corpus",
R"corpus(Questions People Often Ask

How long does it take to learn to program? A few weeks to write small useful programs, a few years to write large ones well, and a lifetime to stop learning. The best way to start is to pick a small problem that you actually care about, such as sorting your photographs or keeping track of your running times, and solve it one piece at a time.

Which language should I learn first? It matters less than people think. Python is friendly and widely used; JavaScript runs in every web browser; C and C++ teach you how the machine really works, at the price of more ways to hurt yourself. Once you know one language well, the second is much easier, and the third is easier still.

Why do computers crash? Usually because a program did something it was not designed to handle: it read past the end of a list, divided by zero, ran out of memory, or received input in a shape nobody expected. Careful programs check their inputs and report problems with a clear message instead of falling over.

Is it safe to leave my computer on all night? Generally yes. Modern machines use very little power when idle, and they are designed to run for years. Dust is a bigger enemy than running time: clean the fans now and then, and make sure the air can flow.

What is the cloud? Other people's computers, in large buildings full of racks, connected to the internet by very fast links. When you store a photograph "in the cloud", it sits on a disk in one of those buildings, usually with copies in several others in case one of them catches fire or floods.

How does a search engine find things so quickly? It does most of the work in advance. Programs crawl the web, read every page they can reach, and build an index: for each word, a list of the pages that contain it. When you search, the engine only has to look up your words in the index, combine the lists, and rank the results. The ranking is the hard part.

Why does my phone battery wear out? A lithium-ion battery stores energy by moving lithium ions between two electrodes. Every charge and discharge causes tiny changes to the materials, and after a few hundred cycles the battery holds noticeably less. Heat speeds the damage up; so does keeping the battery at 100% or letting it run completely flat. Charging it to about eighty per cent and keeping it cool helps it last.

What is a good password? A long one that you have not used anywhere else. Four or five unrelated words strung together are easier to remember and harder to guess than a short jumble of letters and symbols. A password manager can remember the rest for you.

Why is the sky blue? Sunlight contains every colour. As it passes through the air, the short blue wavelengths are scattered in all directions far more than the long red ones, so blue light reaches your eyes from every part of the sky. At sunset the light travels through much more air, most of the blue is scattered away before it reaches you, and the sky glows orange and red.

Why do we have seasons? Not because the earth is closer to the sun in summer; it is actually closest in early January. The seasons come from the tilt of the earth's axis, about 23.4 degrees. For half the year the northern hemisphere leans towards the sun, the days are long, and the sunlight arrives steeply; for the other half it leans away, the days are short, and the light arrives at a low, weak angle.

How much water should a plant get? Less than most people think. More houseplants die from too much water than from too little. Push a finger into the soil: if the top two centimetres are dry, water it well, let the excess drain away, and then leave it alone until it is dry again.
)corpus",
};

}  // namespace

std::string_view builtin_corpus() {
  static const std::string text = [] {
    std::string t;
    for (const char* p : k_parts) t += p;
    return t;
  }();
  return text;
}

}  // namespace tandem
